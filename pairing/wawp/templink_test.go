package wawp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

// linkToken is a hosted QR page's token as Wawp documents it: random, 64
// characters.
const linkToken = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

const goodLink = WawpLinkOrigin + "/temp-qr/" + linkToken

var wawpOnly = linkOrigins(DefaultBaseURL)

func TestDecodeTempLink(t *testing.T) {
	exp := time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)
	ok := func(expires time.Time) TempLink { return TempLink{URL: goodLink, ExpiresAt: expires} }
	tests := []struct {
		name   string
		status int
		body   string
		want   TempLink
		found  bool
		kind   error
	}{
		{"string and expires_at", 201, `{"link":"` + goodLink + `","expires_at":"2026-11-25T14:30:00Z"}`, ok(exp), true, nil},
		{"expiresAt with zone", 200, `{"link":"` + goodLink + `","expiresAt":"2026-11-25T16:30:00+02:00"}`, ok(exp), true, nil},
		{"expiry in milliseconds", 200, `{"link":"` + goodLink + `","expires_at":` + fmt.Sprint(exp.UnixMilli()) + `}`, ok(exp), true, nil},
		{"expiry in seconds as text", 200, `{"link":"` + goodLink + `","expiry":"` + fmt.Sprint(exp.Unix()) + `"}`, ok(exp), true, nil},
		{"link object", 200, `{"link":{"url":"` + goodLink + `","expires_at":"2026-11-25T14:30:00Z"}}`, ok(exp), true, nil},
		{"under data", 200, `{"success":true,"data":{"link":"` + goodLink + `","expires_at":"2026-11-25T14:30:00Z"}}`, ok(exp), true, nil},
		{"no expiry", 200, `{"link":"` + goodLink + `"}`, ok(time.Time{}), true, nil},
		{"unreadable expiry", 200, `{"link":"` + goodLink + `","expires_at":"soon"}`, ok(time.Time{}), true, nil},
		{"no active link", 200, `{"link":null}`, TempLink{}, false, nil},
		{"200 with an error body", 200, `{"success":false,"message":"Session does not exist"}`, TempLink{}, false, ErrBadResponse},
		{"200 with NestJS error", 200, `{"statusCode":422,"message":"Session status is not as expected"}`, TempLink{}, false, ErrNotReady},
		{"200 with NestJS 403", 200, `{"statusCode":403,"message":"Not in your plan"}`, TempLink{}, false, ErrForbidden},
		{"plan refuses: 403", 403, `{"statusCode":403,"message":"Temporary access links are not included in your plan","error":"Forbidden"}`, TempLink{}, false, ErrForbidden},
		{"plan refuses: 402", 402, `Payment Required`, TempLink{}, false, ErrForbidden},
		{"bad token", 401, `{"statusCode":401,"message":"Invalid or missing access token"}`, TempLink{}, false, ErrUnauthorized},
		{"no instance", 404, `{"code":"invalid_session","message":"Session does not exist"}`, TempLink{}, false, ErrNoInstance},
		{"500 HTML", 500, `<html><body>` + goodLink + `</body></html>`, TempLink{}, false, ErrServer},
		{"not JSON", 200, goodLink, TempLink{}, false, ErrBadResponse},
		{"link a number", 200, `{"link":12}`, TempLink{}, false, ErrBadResponse},
		{"empty link", 200, `{"link":""}`, TempLink{}, false, ErrBadResponse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, found, err := decodeTempLink(EndpointTempLinkCreate, tt.status, []byte(tt.body), token, wawpOnly)
			if !errors.Is(err, tt.kind) || (tt.kind != nil) == (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" || found != tt.found {
				t.Errorf("found %v (want %v); link (-want +got):\n%s", found, tt.found, diff)
			}
			assertNoLinkToken(t, nil, linkToken, err)
		})
	}
}

// TestTempLinkOnlyOnWawpOrigin: a link is shown to people, who open it;
// an answer whose link is anywhere but a Wawp QR page (another host, a
// look-alike, plain http, a query smuggling something in) is an
// unreadable answer, and the error does not say what the link was.
func TestTempLinkOnlyOnWawpOrigin(t *testing.T) {
	bad := []string{
		"http://app.wawp.net/temp-qr/" + linkToken,
		"https://api.wawp.net/temp-qr/" + linkToken,
		"https://app.wawp.net.evil.example/temp-qr/" + linkToken,
		"https://evil.example/temp-qr/" + linkToken,
		"https://app.wawp.net@evil.example/temp-qr/" + linkToken,
		"https://user@app.wawp.net/temp-qr/" + linkToken,
		"https://app.wawp.net:8443/temp-qr/" + linkToken,
		"https://APP.WAWP.NET/temp-qr/" + linkToken,
		"https://app.wawp.net/temp-qr/" + linkToken + "?next=https://evil.example",
		"https://app.wawp.net/temp-qr/" + linkToken + "#x",
		"https://app.wawp.net/temp-qr/" + linkToken[:63],
		"https://app.wawp.net/temp-qr/" + linkToken + "0",
		"https://app.wawp.net/temp-qr/../login/" + linkToken,
		"https://app.wawp.net/temp-qr/%39" + linkToken[1:],
		"https://app.wawp.net/temp-qr/" + linkToken + "/",
		"https://app.wawp.net/TEMP-QR/" + linkToken,
		"javascript:alert(1)//app.wawp.net/temp-qr/" + linkToken,
		"//app.wawp.net/temp-qr/" + linkToken,
		" https://app.wawp.net/temp-qr/" + linkToken,
		"https://app.wawp.net/temp-qr/" + linkToken[:60] + "<b>x",
	}
	for _, link := range bad {
		t.Run(link, func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"link": link, "expires_at": "2026-11-25T14:30:00Z"})
			got, found, err := decodeTempLink(EndpointTempLinkCreate, 201, body, token, wawpOnly)
			if !errors.Is(err, ErrBadResponse) || found || got.URL != "" {
				t.Fatalf("decodeTempLink = %q, %v, %v; want ErrBadResponse and no link", got.URL, found, err)
			}
			assertNoLinkToken(t, nil, linkToken, err)
		})
	}
	// A client of another base (a stand-in for Wawp) also takes links on
	// that base's own origin, and still Wawp's.
	origins := linkOrigins("http://127.0.0.1:8080/")
	for link, want := range map[string]bool{
		"http://127.0.0.1:8080/temp-qr/" + linkToken: true,
		goodLink: true,
		"http://127.0.0.1:8081/temp-qr/" + linkToken:  false,
		"https://127.0.0.1:8080/temp-qr/" + linkToken: false,
	} {
		if got := validLink(link, origins); got != want {
			t.Errorf("validLink(%s) for a client of http://127.0.0.1:8080 = %v, want %v", link, got, want)
		}
	}
	if got := linkOrigins("https://api.wawp.net"); len(got) != 1 {
		t.Errorf("linkOrigins(Wawp's API) = %v, want Wawp's QR origin only", got)
	}
}

func TestDecodeRevoke(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		kind   error
	}{
		{"200 success", 200, `{"success":true,"message":"Revoked"}`, nil},
		{"204 empty", 204, ``, nil},
		{"200 empty object", 200, `{}`, nil},
		{"success false", 200, `{"success":false,"message":"no"}`, ErrBadResponse},
		{"200 NestJS 500", 200, `{"statusCode":500,"message":"boom"}`, ErrServer},
		{"200 HTML", 200, `<html>ok</html>`, ErrBadResponse},
		{"403", 403, `{"message":"Not in your plan"}`, ErrForbidden},
		{"404", 404, `{"code":"invalid_session"}`, ErrNoInstance},
		{"502", 502, `Bad Gateway`, ErrUpstream},
		{"echoes the link", 500, `{"message":"could not revoke ` + goodLink + `"}`, ErrServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeRevoke(EndpointTempLinkRevoke, tt.status, []byte(tt.body), token)
			if !errors.Is(err, tt.kind) || (tt.kind != nil) == (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.kind)
			}
			assertNoLinkToken(t, nil, linkToken, err)
			assertNoToken(t, nil, token, err)
		})
	}
}

// TestTempLinkNeverPrinted: a TempLink printed with any verb, or logged,
// shows its expiry, never its URL.
func TestTempLinkNeverPrinted(t *testing.T) {
	l := TempLink{URL: goodLink, ExpiresAt: time.Date(2026, 11, 25, 14, 30, 0, 0, time.UTC)}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("issued", "link", l, "links", []TempLink{l})
	slog.New(slog.NewTextHandler(&logs, nil)).Info("issued", "link", l)
	lines := []string{logs.String()}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		lines = append(lines, fmt.Sprintf(verb, l), fmt.Sprintf(verb, &l), fmt.Sprintf(verb, []TempLink{l}))
	}
	for _, line := range lines {
		if strings.Contains(line, linkToken[:20]) {
			t.Errorf("the link appears in %q", line)
		}
	}
	if !strings.Contains(logs.String(), "2026-11-25T14:30:00Z") {
		t.Errorf("the log does not say when the link expires: %s", logs.String())
	}
}

// TestTempLinkRequestShape: the three calls on /v2/session/temp-link, the
// token sent once, in the query string with instance_id; POST and DELETE
// with a JSON body, GET with none.
func TestTempLinkRequestShape(t *testing.T) {
	type seen struct {
		Method, Path, ContentType, Body string
		Query                           url.Values
		TokenCount                      int
	}
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var dump strings.Builder
		r.Header.Write(&dump)
		all := r.URL.String() + "\n" + dump.String() + "\n" + string(raw)
		got = append(got, seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(raw), r.URL.Query(), strings.Count(all, token)})
		switch r.Method {
		case http.MethodDelete:
			io.WriteString(w, `{"success":true}`)
		default:
			io.WriteString(w, `{"link":"`+goodLink+`","expires_at":"2026-11-25T14:30:00Z"}`)
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, token, srv.Client())
	ctx := context.Background()
	if l, err := c.CreateTempLink(ctx, "INST00000001"); err != nil || l.URL != goodLink {
		t.Fatalf("CreateTempLink = %v, %v", l, err)
	}
	if l, ok, err := c.ActiveTempLink(ctx, "INST00000001"); err != nil || !ok || l.URL != goodLink {
		t.Fatalf("ActiveTempLink = %v, %v, %v", l, ok, err)
	}
	if err := c.RevokeTempLink(ctx, "INST00000001"); err != nil {
		t.Fatal(err)
	}
	query := url.Values{"instance_id": {"INST00000001"}, "access_token": {token}}
	want := []seen{
		{"POST", pathTempLink, "application/json", "{}", query, 1},
		{"GET", pathTempLink, "", "", query, 1},
		{"DELETE", pathTempLink, "application/json", "{}", query, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// TestLockedOutAnswer: WhatsApp's refusal to pair a phone that asked too
// often is its own kind of error, whatever status carries it.
func TestLockedOutAnswer(t *testing.T) {
	for _, status := range []int{200, 429, 500} {
		_, err := decodeCode(status, []byte(`{"code":"rate-overlimit","message":"Pairing temporarily blocked for this number"}`), token)
		if !errors.Is(err, ErrLockedOut) {
			t.Errorf("HTTP %d: err = %v, want ErrLockedOut", status, err)
		}
	}
	if _, err := decodeCode(429, nil, token); !errors.Is(err, ErrRateLimited) {
		t.Errorf("a bare 429: err = %v, want ErrRateLimited (Wawp's own limit)", err)
	}
}

// assertNoLinkToken fails if 20 or more characters in a row of a QR
// page's token appear in what err prints or in a log line carrying it,
// unless body had them itself.
func assertNoLinkToken(t *testing.T, body []byte, tok string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var logLine bytes.Buffer
	slog.New(slog.NewJSONHandler(&logLine, nil)).Error("wawp call failed", "err", err)
	slog.New(slog.NewTextHandler(&logLine, nil)).Error("wawp call failed", "err", err)
	for _, line := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logLine.String()} {
		for k := 0; k+20 <= len(tok); k++ {
			if piece := tok[k : k+20]; strings.Contains(line, piece) && !bytes.Contains(body, []byte(piece)) {
				t.Fatalf("the link's token (%q…) appears in %q", piece, line)
			}
		}
	}
}

// TestTempLinkAgainstFake: the client and pairing/fakewawp agree on
// temp-link, and the client refuses a link on any origin but Wawp's QR
// origin or its own base's.
func TestTempLinkAgainstFake(t *testing.T) {
	w := fakewawp.New(token)
	defer w.Close()
	w.AddInstance("INST00000001", "")
	w.AddInstance("INST00000002", "")
	w.DisableTempLinks("INST00000002")
	c := NewClient(w.URL, token, nil)
	ctx := context.Background()
	if _, ok, err := c.ActiveTempLink(ctx, "INST00000001"); err != nil || ok {
		t.Fatalf("ActiveTempLink before any: %v, %v; want none", ok, err)
	}
	l, err := c.CreateTempLink(ctx, "INST00000001")
	if err != nil || l.URL != w.ActiveLink("INST00000001") || time.Until(l.ExpiresAt) < 29*time.Minute {
		t.Fatalf("CreateTempLink = %s %v, %v; the fake's active link is %q", l, l.ExpiresAt, err, w.ActiveLink("INST00000001"))
	}
	if got, ok, err := c.ActiveTempLink(ctx, "INST00000001"); err != nil || !ok || got.URL != l.URL {
		t.Errorf("ActiveTempLink = %s, %v, %v; want the link made", got, ok, err)
	}
	if err := c.RevokeTempLink(ctx, "INST00000001"); err != nil || w.ActiveLink("INST00000001") != "" {
		t.Errorf("RevokeTempLink: %v; the fake's active link is %q", err, w.ActiveLink("INST00000001"))
	}
	if _, err := c.CreateTempLink(ctx, "INST00000002"); !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "plan") {
		t.Errorf("a plan without temp links: err = %v, want ErrForbidden with Wawp's message", err)
	}
	w.SetLinkOrigin(WawpLinkOrigin)
	if l, err := c.CreateTempLink(ctx, "INST00000001"); err != nil || !strings.HasPrefix(l.URL, WawpLinkOrigin+"/temp-qr/") {
		t.Errorf("a link on Wawp's QR origin: %s, %v", l, err)
	}
	w.SetLinkOrigin("https://evil.example")
	l, err = c.CreateTempLink(ctx, "INST00000001")
	if !errors.Is(err, ErrBadResponse) || l.URL != "" {
		t.Errorf("a link on another origin: %s, %v; want ErrBadResponse", l, err)
	}
	assertNoLinkToken(t, nil, strings.TrimPrefix(w.ActiveLink("INST00000001"), "https://evil.example/temp-qr/"), err)
}
