-- The projection keeps only what is read: the folded state (a versioned JSON document).
ALTER TABLE phones
    DROP COLUMN resource_owner,
    DROP COLUMN phone,
    DROP COLUMN verified,
    DROP COLUMN sequence,
    DROP COLUMN created_at,
    DROP COLUMN changed_at;
