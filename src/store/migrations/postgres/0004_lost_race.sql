-- Batches write without holding row locks from their read (one statement, committed on its
-- own); the statement checks that what it read is unchanged and, when it is not, fails with
-- a serialization failure (re-run by the writer), which plain SQL cannot raise.
CREATE FUNCTION phoneproof_unchanged(ok BOOLEAN) RETURNS BOOLEAN
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'rows this batch read were changed by another writer'
            USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN ok;
END
$$;
