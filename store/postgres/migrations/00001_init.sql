-- linkbot's PostgreSQL schema, version 1: everything store/postgres keeps.
--
-- Expand/contract: during a rolling deploy the old and the new version of
-- linkbot run side by side on one database, so a migration only ever
-- expands (new tables, new nullable or defaulted columns, new indexes) in
-- the release that starts using it, and contracts (drops what no running
-- version reads any more) one release later, in a migration of its own.
-- A pairing is a JSON document (pairings.doc) beside the few columns the
-- queries need, so a new field of pairing.Pairing needs no migration at
-- all; and a version that does not know a field leaves it alone: a write
-- replaces only the keys the writer's pairing.Pairing has
-- (doc - known keys || new doc), so an older replica updating a pairing
-- does not drop what a newer one added.
--
-- This first migration only creates: nothing older runs on PostgreSQL.
-- Times are unix nanoseconds (bigint) where they are compared, so the
-- conformance suite's nanosecond steps are exact (timestamptz keeps
-- microseconds).

-- +goose Up

-- Settings of this database: the phone-key secret (32 random bytes, made by
-- the first linkbot that opens the database; never returned).
CREATE TABLE linkbot_meta (
    key   text PRIMARY KEY,
    value bytea NOT NULL
);

-- One row per pairing. doc is pairing.Pairing as JSON; the columns are
-- what queries select and lock by.
--   lease_until_ns: until when the pairing holds its instance, on the
--     DATABASE's clock (see store/postgres: lease = now() + (ExpiresAt −
--     the caller's now)); it counts only while state is requesting or live.
--   ended_ns: EndedAt, or ExpiresAt when it never ended (the caller's
--     clock), for pruning.
--   watched: its Slack message is still kept current.
CREATE TABLE pairings (
    id             text PRIMARY KEY,
    instance       text NOT NULL,
    state          text NOT NULL,
    watched        boolean NOT NULL DEFAULT false,
    lease_until_ns bigint NOT NULL,
    ended_ns       bigint NOT NULL,
    doc            jsonb NOT NULL
);
CREATE INDEX pairings_watched ON pairings (id) WHERE watched;

-- One live code per instance: the primary key is the constraint. A row
-- names the pairing holding the instance; it holds it while that pairing
-- is requesting or live and its lease runs.
CREATE TABLE live_by_instance (
    instance   text PRIMARY KEY,
    pairing_id text NOT NULL
);
CREATE INDEX live_by_instance_pairing ON live_by_instance (pairing_id);

-- Code requests, counted per phone and per user in sliding windows.
CREATE TABLE attempts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    phone      text NOT NULL,
    user_id    text NOT NULL,
    at_ns      bigint NOT NULL,
    pairing_id text NOT NULL,
    team       text NOT NULL DEFAULT '',
    instance   text NOT NULL DEFAULT '',
    -- the state the attempt's pairing settled in (requesting until then);
    -- nothing reads it back: it explains the table
    outcome    text NOT NULL
);
CREATE INDEX attempts_phone ON attempts (phone, at_ns);
CREATE INDEX attempts_user ON attempts (user_id, at_ns);
CREATE INDEX attempts_pairing ON attempts (pairing_id);
CREATE INDEX attempts_at ON attempts (at_ns);

-- Posts taken from each Slack response_url (Slack allows 5 in 30 minutes).
CREATE TABLE response_urls (
    url       text PRIMARY KEY,
    issued_ns bigint NOT NULL,
    used      integer NOT NULL CHECK (used BETWEEN 0 AND 5)
);

-- The audit log. doc is pairing.Event as JSON, without digits or phone
-- key; phone_key is the keyed hash of the phone (HMAC under the secret in
-- linkbot_meta, or the unkeyed hash of events copied from an older bbolt
-- file); instance_key is what an instance query matches: the instance ID
-- in lower case, or for events without one, the alias.
CREATE TABLE audit_events (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ns        bigint NOT NULL,
    phone_key    text,
    instance_key text,
    doc          jsonb NOT NULL
);
CREATE INDEX audit_events_at ON audit_events (at_ns, seq);
CREATE INDEX audit_events_phone ON audit_events (phone_key, at_ns, seq) WHERE phone_key IS NOT NULL;
CREATE INDEX audit_events_instance ON audit_events (instance_key, at_ns, seq) WHERE instance_key IS NOT NULL;

-- +goose Down
-- Only for development: it drops every pairing, limit and audit event.
DROP TABLE audit_events;
DROP TABLE response_urls;
DROP TABLE attempts;
DROP TABLE live_by_instance;
DROP TABLE pairings;
DROP TABLE linkbot_meta;
