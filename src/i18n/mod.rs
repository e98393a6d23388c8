//! The languages phoneproof speaks: ZITADEL's 20, their texts (one Fluent file per language
//! in `locales/`, compiled in), and which of them a request gets.
use std::fmt;
use std::sync::LazyLock;

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource};
use fluent_langneg::{NegotiationStrategy, negotiate_languages};
use unic_langid::LanguageIdentifier;

/// Every shipped language (ZITADEL's codes) with its texts.
const LOCALES: [(&str, &str); 20] = [
    ("bg", include_str!("locales/bg.ftl")),
    ("cs", include_str!("locales/cs.ftl")),
    ("de", include_str!("locales/de.ftl")),
    ("en", include_str!("locales/en.ftl")),
    ("es", include_str!("locales/es.ftl")),
    ("fr", include_str!("locales/fr.ftl")),
    ("hu", include_str!("locales/hu.ftl")),
    ("id", include_str!("locales/id.ftl")),
    ("it", include_str!("locales/it.ftl")),
    ("ja", include_str!("locales/ja.ftl")),
    ("ko", include_str!("locales/ko.ftl")),
    ("mk", include_str!("locales/mk.ftl")),
    ("nl", include_str!("locales/nl.ftl")),
    ("pl", include_str!("locales/pl.ftl")),
    ("pt", include_str!("locales/pt.ftl")),
    ("ro", include_str!("locales/ro.ftl")),
    ("ru", include_str!("locales/ru.ftl")),
    ("sv", include_str!("locales/sv.ftl")),
    ("tr", include_str!("locales/tr.ftl")),
    ("zh", include_str!("locales/zh.ftl")),
];

/// One of the shipped languages.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Language(u8);

impl Language {
    pub const ENGLISH: Language = Language(3);

    /// Every shipped language, in the order of their codes.
    pub fn all() -> impl Iterator<Item = Language> {
        (0..LOCALES.len() as u8).map(Language)
    }

    /// The shipped language with exactly this code (`de`, not `de-CH`), any case.
    pub fn from_code(code: &str) -> Option<Language> {
        LOCALES
            .iter()
            .position(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|i| Language(i as u8))
    }

    pub fn code(self) -> &'static str {
        LOCALES[self.0 as usize].0
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Language({})", self.code())
    }
}

struct Catalog {
    ids: Vec<LanguageIdentifier>,
    bundles: Vec<FluentBundle<FluentResource>>,
}

/// Built on first use from the compiled-in files; a test parses every file, so a broken one
/// fails the build's tests rather than a request.
static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let mut ids = Vec::with_capacity(LOCALES.len());
    let mut bundles = Vec::with_capacity(LOCALES.len());
    for (code, source) in LOCALES {
        let id: LanguageIdentifier = code.parse().expect("a shipped code is a language tag");
        let resource = FluentResource::try_new(source.to_owned())
            .unwrap_or_else(|(_, errors)| panic!("locales/{code}.ftl: {errors:?}"));
        let mut bundle = FluentBundle::new_concurrent(vec![id.clone()]);
        // Unicode isolation marks around the code would reach the SMS as invisible characters.
        bundle.set_use_isolating(false);
        bundle
            .add_resource(resource)
            .unwrap_or_else(|errors| panic!("locales/{code}.ftl: {errors:?}"));
        ids.push(id);
        bundles.push(bundle);
    }
    Catalog { ids, bundles }
});

/// Parses and checks every file now rather than on the first request that needs one.
pub fn load() {
    LazyLock::force(&CATALOG);
}

/// The message `key` (a ZITADEL i18n key such as `Errors.User.Phone.Invalid`) in `language`;
/// `None` when that language's file has no such message.
pub fn text(language: Language, key: &str) -> Option<String> {
    render(language, key, None)
}

fn render(language: Language, key: &str, args: Option<&FluentArgs>) -> Option<String> {
    let bundle = &CATALOG.bundles[language.0 as usize];
    let pattern = bundle.get_message(&key.replace('.', "-"))?.value()?;
    let mut errors = Vec::new();
    let text = bundle.format_pattern(pattern, args, &mut errors);
    errors.is_empty().then(|| text.into_owned())
}

/// ZITADEL's `VerifyPhone` message in one language: the SMS body is `text`; an HTTP provider
/// gets all six.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPhoneTexts {
    pub title: String,
    pub pre_header: String,
    pub subject: String,
    pub greeting: String,
    pub text: String,
    pub button_text: String,
}

/// The `VerifyPhone` texts in `language` with `code` filled in. There are no user profiles,
/// so the greeting's display name is empty, as ZITADEL renders it for a user without one.
pub fn verify_phone(language: Language, code: &str) -> VerifyPhoneTexts {
    let mut args = FluentArgs::new();
    args.set("code", code.to_owned());
    args.set("displayName", String::new());
    let field = |name: &str| {
        render(language, &format!("VerifyPhone.{name}"), Some(&args))
            .or_else(|| {
                render(
                    Language::ENGLISH,
                    &format!("VerifyPhone.{name}"),
                    Some(&args),
                )
            })
            .expect("the English file has every VerifyPhone text (a test checks)")
    };
    VerifyPhoneTexts {
        title: field("Title"),
        pre_header: field("PreHeader"),
        subject: field("Subject"),
        greeting: field("Greeting"),
        text: field("Text"),
        button_text: field("ButtonText"),
    }
}

/// The shipped language that best serves one `Accept-Language` value (or a token's language
/// claim), by RFC 4647 lookup: entries by falling `q` (`q=0` means "not this one"), each
/// matched exactly or through its base language (`de-CH` → `de`). `None` when nothing
/// matches, and when the value is malformed anywhere (one bad entry spoils the whole value).
pub fn negotiate(value: &[u8]) -> Option<Language> {
    let requested = accepted_languages(std::str::from_utf8(value).ok()?)?;
    let catalog = &*CATALOG;
    let found = negotiate_languages(&requested, &catalog.ids, None, NegotiationStrategy::Lookup);
    let found = found.first()?;
    catalog
        .ids
        .iter()
        .position(|id| id == *found)
        .map(|i| Language(i as u8))
}

/// More entries than any browser sends; past them a value counts as malformed, so a client
/// cannot make one request cost thousands of tag parses and matches.
const MAX_ENTRIES: usize = 64;

/// The language ranges of an `Accept-Language` value (RFC 9110 12.5.4), best first; `*` and
/// `q=0` entries are left out. `None` for anything outside the grammar: a range that is
/// not a language tag, a `q` that is not a qvalue, a parameter other than `q`.
fn accepted_languages(value: &str) -> Option<Vec<LanguageIdentifier>> {
    let mut ranges = Vec::new();
    // Empty list elements are allowed (RFC 9110 5.6.1.2).
    for (position, element) in value
        .split(',')
        .map(|e| e.trim_matches([' ', '\t']))
        .filter(|e| !e.is_empty())
        .enumerate()
    {
        if position == MAX_ENTRIES {
            return None;
        }
        let (range, weight) = match element.split_once(';') {
            Some((range, weight)) => (range.trim_end_matches([' ', '\t']), Some(weight)),
            None => (element, None),
        };
        let thousandths = match weight {
            None => 1000,
            Some(w) => qvalue(w.trim_start_matches([' ', '\t']))?,
        };
        if range == "*" {
            continue;
        }
        let tag: LanguageIdentifier = range.parse().ok()?;
        if thousandths > 0 {
            ranges.push((thousandths, position, tag));
        }
    }
    // Stable by q, then by position: equal weights keep the sender's order.
    ranges.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    Some(ranges.into_iter().map(|(_, _, tag)| tag).collect())
}

/// `q=<qvalue>` in thousandths: `0`, `0.5`, `1.000`; at most three decimals, never above 1.
fn qvalue(weight: &str) -> Option<u16> {
    let value = weight
        .strip_prefix("q=")
        .or_else(|| weight.strip_prefix("Q="))?;
    let (int, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_thousandths = format!("{frac:0<3}").parse::<u16>().ok()?;
    match int {
        "0" => Some(frac_thousandths),
        "1" if frac_thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// How a request's language is chosen: the token's language claim, else the request's
/// `Accept-Language`, else the configured default.
#[derive(Debug, Clone, Copy)]
pub struct Negotiator {
    pub default: Language,
}

impl Negotiator {
    /// `token` is the token's language, when it names a shipped one; `accept_language` the
    /// request's header values (or gRPC metadata entries), read as one comma-joined list.
    pub fn pick<'a>(
        &self,
        token: Option<Language>,
        accept_language: impl IntoIterator<Item = &'a [u8]>,
    ) -> Language {
        token
            .or_else(|| {
                let joined = accept_language
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(&b","[..]);
                negotiate(&joined)
            })
            .unwrap_or(self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lang(code: &str) -> Option<Language> {
        Some(Language::from_code(code).expect("shipped"))
    }

    #[test]
    fn every_file_parses_and_english_has_every_message() {
        load();
        let english = &CATALOG.bundles[Language::ENGLISH.0 as usize];
        for (code, source) in LOCALES {
            for line in source
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
            {
                let id = line.split(" = ").next().unwrap();
                assert!(english.has_message(id), "{code}: {id} is not in en.ftl");
            }
        }
        assert_eq!(Language::ENGLISH.code(), "en");
    }

    #[test]
    fn header_values_pick_languages_as_rfc_4647_lookup_does() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("de", Some("de"), "exact"),
            ("DE", Some("de"), "case is ignored"),
            (
                "de-CH",
                Some("de"),
                "a regional variant falls back to its base",
            ),
            ("de-CH,fr;q=0.5", Some("de"), "the higher q wins"),
            ("fr;q=0.5,de-CH", Some("de"), "q decides, not the order"),
            ("fr;q=0.5, de;q=0.5", Some("fr"), "equal q keeps the order"),
            ("fi", None, "not shipped"),
            (
                "fi,sv;q=0.2",
                Some("sv"),
                "an unshipped first choice yields to the next",
            ),
            ("de;q=0,fr;q=0.1", Some("fr"), "q=0 excludes"),
            ("de;q=0", None, "q=0 only"),
            ("*", None, "any language is no particular one"),
            ("*,ja;q=0.5", Some("ja"), "`*` skipped"),
            ("", None, "empty"),
            (" , ,", None, "empty elements only"),
            ("pt-BR, en;q=0.8", Some("pt"), "pt-BR"),
            ("zh-CN", Some("zh"), "zh-CN"),
            (
                "de_CH",
                Some("de"),
                "an underscore is accepted by the tag parser",
            ),
            ("und", None, "undetermined"),
            ("de;q=1.0001", None, "four decimals"),
            ("de;q=2", None, "above 1"),
            ("de;q=-1", None, "negative"),
            ("de;q=NaN", None, "not a number"),
            ("de;level=1", None, "a parameter other than q"),
            ("de,fr;q=", None, "q without a value spoils the whole value"),
            ("d€", None, "not a tag"),
            ("de-CH-x", None, "a broken subtag"),
            ("en-GB;Q=0.9", Some("en"), "Q in upper case"),
            ("fr ; q=0.7 , de ; q=0.8", Some("de"), "optional whitespace"),
        ];
        for (header, want, why) in cases {
            let want = want.and_then(lang);
            assert_eq!(negotiate(header.as_bytes()), want, "{header:?}: {why}");
        }
        assert_eq!(negotiate(b"de\xff"), None, "not UTF-8");
        let many = |n: usize| vec!["fi"; n].join(",") + ",de";
        assert_eq!(negotiate(many(63).as_bytes()), lang("de"));
        assert_eq!(negotiate(many(64).as_bytes()), None, "too many entries");
    }

    #[test]
    fn the_token_beats_the_header_and_the_default_comes_last() {
        let n = Negotiator {
            default: Language::from_code("ro").unwrap(),
        };
        assert_eq!(n.pick(lang("fr"), [&b"de"[..]]), lang("fr").unwrap());
        assert_eq!(n.pick(None, [&b"de"[..]]), lang("de").unwrap());
        assert_eq!(n.pick(None, [&b"fi"[..]]), lang("ro").unwrap());
        assert_eq!(n.pick(None, []), lang("ro").unwrap());
        assert_eq!(
            n.pick(None, [&b"fi"[..], &b"it;q=0.3"[..]]),
            lang("it").unwrap(),
            "two header fields are one list"
        );
    }

    #[test]
    fn error_texts_are_zitadels_in_every_language() {
        let fixture = include_str!("../../tests/fixtures/error_texts.tsv");
        let mut lines = fixture.lines().filter(|l| !l.starts_with('#'));
        let keys: Vec<&str> = lines.next().unwrap().split('\t').skip(1).collect();
        let mut seen = 0;
        for line in lines {
            let cells: Vec<&str> = line.split('\t').collect();
            let language = Language::from_code(cells[0]).unwrap();
            for (key, want) in keys.iter().zip(&cells[1..]) {
                let want = (*want != "(none)").then(|| want.to_string());
                assert_eq!(text(language, key), want, "{language} {key}");
            }
            seen += 1;
        }
        assert_eq!(seen, 20);
    }

    #[test]
    fn sms_texts_are_zitadels_in_every_language() {
        let fixture = include_str!("../../tests/fixtures/verify_phone.tsv");
        let mut seen = Vec::new();
        for line in fixture.lines().skip_while(|l| l.starts_with('#')).skip(1) {
            let c: Vec<String> = line
                .split('\t')
                .map(|c| {
                    c.replace("{{.Code}}", "K7Q2XZ")
                        .replace("{{.DisplayName}}", "")
                })
                .collect();
            let language = Language::from_code(&c[0]).unwrap();
            let want = VerifyPhoneTexts {
                title: c[1].clone(),
                pre_header: c[2].clone(),
                subject: c[3].clone(),
                greeting: c[4].clone(),
                text: c[5].clone(),
                button_text: c[6].clone(),
            };
            assert_eq!(verify_phone(language, "K7Q2XZ"), want, "{language}");
            assert!(!want.text.contains("&lt;") && !want.text.contains("&gt;"));
            seen.push(language);
        }
        assert_eq!(seen, Language::all().collect::<Vec<_>>());
    }

    proptest! {
        #[test]
        fn any_bytes_negotiate_without_panicking(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = negotiate(&value);
        }

        #[test]
        fn well_formed_lists_pick_their_best_shipped_entry(
            entries in proptest::collection::vec(("[a-z]{2,3}(-[A-Z]{2})?", 0u16..=1000), 1..6)
        ) {
            let header = entries
                .iter()
                .map(|(tag, q)| format!("{tag};q={}.{:03}", q / 1000, q % 1000))
                .collect::<Vec<_>>()
                .join(", ");
            let mut best: Option<(u16, Language)> = None;
            for (tag, q) in &entries {
                let base = tag.split('-').next().unwrap();
                if let Some(l) = Language::from_code(base).filter(|_| *q > 0)
                    && best.is_none_or(|(bq, _)| *q > bq)
                {
                    best = Some((*q, l));
                }
            }
            prop_assert_eq!(negotiate(header.as_bytes()), best.map(|(_, l)| l), "{}", header);
        }
    }
}
