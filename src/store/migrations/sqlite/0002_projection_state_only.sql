-- The projection keeps only what is read: the folded state (a versioned JSON document).
ALTER TABLE phones DROP COLUMN resource_owner;
ALTER TABLE phones DROP COLUMN phone;
ALTER TABLE phones DROP COLUMN verified;
ALTER TABLE phones DROP COLUMN sequence;
ALTER TABLE phones DROP COLUMN created_at;
ALTER TABLE phones DROP COLUMN changed_at;
