-- Per-customer data keys (crypto-shredding, policy.sealing): intake seals each case's
-- personal fields under its customer's key before anything else reads the case, and
-- `casegate erase` destroys the key, which makes every sealed copy unreadable at once
-- (topics, read models, replays) while the events themselves never change.
--
-- customer_ref is a keyed hash of the customer id (infra.keys.ref_key), so this table
-- holds no customer id. `wrapped` is the data key encrypted (AES-GCM) under the
-- deployment's master key, which the database never holds; erasure sets it to NULL and
-- the row stays as the record that the key existed and when it was destroyed.
CREATE TABLE data_keys (
    key_id       uuid        PRIMARY KEY,
    customer_ref text        NOT NULL CHECK (customer_ref ~ '^[0-9a-f]{64}$'),
    wrapped      bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    erased_at    timestamptz,
    erased_by    text,
    CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL))
);
-- One live key per customer: intake instances creating one at once agree on it. After an
-- erasure a later case of the same customer gets a new key.
CREATE UNIQUE INDEX data_keys_live ON data_keys (customer_ref) WHERE wrapped IS NOT NULL;
