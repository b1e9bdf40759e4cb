-- A developer's own name for a credential, kept as given ("my flood app"); the username carries a slug of it.
ALTER TABLE mqtt_accounts ADD COLUMN label text CHECK (label IS NULL OR length(label) BETWEEN 1 AND 64);
