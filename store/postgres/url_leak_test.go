package postgres

import (
	"strings"
	"testing"
)

// TestUnescapedPasswordNeverShown: a password with a character that must
// be percent-escaped in a URL ('/', '#', '?'), pasted as it is — the
// commonest LINKBOT_DATABASE_URL mistake — makes net/url read the userinfo
// as host:port, and its error ("invalid port \":<password>\" after host")
// quotes the password. parseURL keeps uerr.Err's text, and the password it
// would scrub is not known yet, so the error (exit 78 on stderr, and the
// log) shows it.
func TestUnescapedPasswordNeverShown(t *testing.T) {
	const pw = "S3cr3tpa55"
	for _, tt := range []struct{ name, url string }{
		{"slash", "postgres://linkbot:" + pw + "/x@db.example:5432/linkbot"},
		{"hash", "postgres://linkbot:" + pw + "#x@db.example:5432/linkbot"},
		{"question mark", "postgres://linkbot:" + pw + "?x@db.example:5432/linkbot"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			errs := []error{CheckURL(tt.url)}
			_, err := Open(t.Context(), tt.url, Options{})
			errs = append(errs, err)
			_, _, err = Migrate(t.Context(), tt.url, nil)
			errs = append(errs, err)
			for _, err := range errs {
				if err == nil {
					t.Fatalf("no error for %s", tt.url)
				}
				if strings.Contains(err.Error(), pw) {
					t.Errorf("the password is in %q", err)
				}
			}
			if d := Describe(tt.url); strings.Contains(d, pw) {
				t.Errorf("Describe = %q", d)
			}
		})
	}
}
