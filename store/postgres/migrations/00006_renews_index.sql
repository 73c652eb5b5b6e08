-- linkbot's PostgreSQL schema, version 6: an index on the pairing a
-- pairing renews (issue 11 review 2). ClaimView of a pairing locks the
-- renewals shown in its message before it claims (its claim loses while
-- theirs runs), looking them up by the document's renews key.
--
-- Expand only: one new index; a version-5 replica runs beside it.

-- +goose Up
CREATE INDEX pairings_renews ON pairings ((doc->>'renews')) WHERE doc->>'renews' <> '';

-- +goose Down
DROP INDEX pairings_renews;
