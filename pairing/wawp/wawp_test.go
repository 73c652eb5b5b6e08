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
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/linkbot/linkbot/pairing/fakewawp"
)

const token = "tok-secret-123"

func TestDecodeCode(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		want   string
		kind   error
	}{
		{"dashed", 200, `{"code":"ABCD-1234"}`, "ABCD1234", nil},
		{"no dash lower case", 201, `{"code":"abcd1234"}`, "ABCD1234", nil},
		{"200 with error code", 200, `{"code":"invalid_session","message":"no"}`, "", ErrBadResponse},
		{"200 without code", 200, `{"success":false}`, "", ErrBadResponse},
		{"200 with NestJS error", 200, `{"statusCode":422,"message":"Session status is not as expected"}`, "", ErrNotReady},
		{"200 not JSON", 200, `OK`, "", ErrBadResponse},
		{"400 NestJS array", 400, `{"statusCode":400,"message":["phone_number must be a string"],"error":"Bad Request"}`, "", ErrBadRequest},
		{"401 XML", 401, `<error><message>Unauthorized</message></error>`, "", ErrUnauthorized},
		{"404 code shape", 404, `{"code":"invalid_session","message":"Session does not exist"}`, "", ErrNoInstance},
		{"422", 422, `{"statusCode":422,"message":"Session status is not as expected","error":"Unprocessable Entity"}`, "", ErrNotReady},
		{"429", 429, ``, "", ErrRateLimited},
		{"500 HTML", 500, `<html><body><h1>500</h1></body></html>`, "", ErrServer},
		{"502 plain", 502, `Bad Gateway`, "", ErrUpstream},
		{"code too long", 200, `{"code":"ABCD-12345"}`, "", ErrBadResponse},
		{"code as number", 200, `{"code":12345678}`, "12345678", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeCode(tt.status, []byte(tt.body), token)
			if tt.kind == nil {
				if err != nil || got != tt.want {
					t.Fatalf("decodeCode = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("decodeCode err = %v, want %v", err, tt.kind)
			}
			if got != "" {
				t.Errorf("decodeCode returned code %q with an error", got)
			}
		})
	}
}

func TestDecodeSession(t *testing.T) {
	s, err := decodeSession(200, []byte(`{"name":"x","status":"working","me":{"id":"201012345678:3@s.whatsapp.net"}}`), token)
	if err != nil || s.Status != StatusWorking || s.Me != "201012345678" {
		t.Errorf("decodeSession = %+v, %v", s, err)
	}
	if _, err := decodeSession(200, []byte(`{"code":"invalid_session"}`), token); !errors.Is(err, ErrBadResponse) {
		t.Errorf("status-less 200: err = %v, want ErrBadResponse", err)
	}
}

func TestTokenNeverInErrors(t *testing.T) {
	w := fakewawp.New(token)
	defer w.Close()
	w.AddInstance("INST00000001", "")
	w.FailNext("INST00000001", fakewawp.RequestCode, fakewawp.Failure{Status: 500, ContentType: "text/plain", Body: "failed for access_token=" + token})
	w.FailNext("INST00000001", fakewawp.RequestCode, fakewawp.Failure{Hang: true})
	c := NewClient(w.URL, token, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err1 := c.RequestCode(ctx, "INST00000001", "201112223333")
	_, err2 := c.RequestCode(ctx, "INST00000001", "201112223333")
	dead := NewClient("http://127.0.0.1:1", token, nil)
	_, err3 := dead.SessionInfo(context.Background(), "INST00000001")
	for i, err := range []error{err1, err2, err3} {
		if err == nil || strings.Contains(err.Error(), token) {
			t.Errorf("error %d = %v: missing or leaks the token", i, err)
		}
	}
	if !errors.Is(err2, ErrTimeout) {
		t.Errorf("hang: err = %v, want ErrTimeout", err2)
	}
	var aerr *APIError
	if !errors.As(err3, &aerr) || aerr.Sent || !errors.Is(err3, ErrUnreachable) {
		t.Errorf("refused connection: err = %#v, want unsent ErrUnreachable", err3)
	}
}

// TestErrorTextRedactsBeforeShortening: Wawp's error text is shortened for
// the log; a body echoing the token across the cut must not leave the
// token's first characters behind.
func TestErrorTextRedactsBeforeShortening(t *testing.T) {
	pad := func(n int) string { return strings.Repeat("x", n) }
	tests := []struct {
		name   string
		status int
		body   string
	}{
		{"JSON message", 500, `{"message":"` + pad(195) + token + `"}`},
		{"JSON error", 400, `{"error":"` + pad(190) + token + `"}`},
		{"JSON code", 404, `{"code":"` + pad(55) + token + `"}`},
		{"plain text", 502, pad(193) + " " + token},
		{"HTML", 500, "<p>" + pad(193) + "</p>" + token},
		{"200 without a code", 200, `{"message":"` + pad(197) + token + `"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeCode(tt.status, []byte(tt.body), token)
			if err == nil {
				t.Fatal("decodeCode accepted an error body")
			}
			assertNoToken(t, []byte(tt.body), token, err)
		})
	}
}

// TestTokenCutByBodyLimitNotLeaked: Wawp's answer is read up to 64 KiB.
// When an error page echoes the request URL (token included) across that
// limit, the token is cut by the read, not by shorten, so redact no longer
// finds it; its first characters must not reach the error (and the log).
func TestTokenCutByBodyLimitNotLeaked(t *testing.T) {
	const secret = "wawp-live-0123456789abcdef0123456789abcdef"
	for _, keep := range []int{1, 8, 20, 35} {
		for _, escaped := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d characters/escaped=%v", keep, escaped), func(t *testing.T) {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.WriteHeader(http.StatusInternalServerError)
					// An HTML error page whose visible text is only the
					// request URL; its markup (or whitespace) fills the
					// first 64 KiB.
					echoed := r.URL.Query().Get("access_token")
					if escaped {
						echoed = url.QueryEscape(echoed)
					}
					pad := maxWawpResponseBody - len("access_token=") - keep
					io.WriteString(w, strings.Repeat(" ", pad)+"access_token="+echoed+"\n")
				}))
				defer srv.Close()
				tok := secret
				if escaped {
					tok = "wawp/live+0123456789=abcdef&0123456789abcdef"
				}
				c := NewClient(srv.URL, tok, srv.Client())
				_, err := c.RequestCode(context.Background(), "INST00000001", "201112223333")
				if err == nil {
					t.Fatal("no error")
				}
				form := tok
				if escaped {
					form = url.QueryEscape(tok)
				}
				if !strings.HasSuffix(err.Error(), "access_token=") {
					t.Errorf("error %q: want it to end where the token began, with nothing of its first %d characters", err, keep)
				}
				assertNoCutToken(t, nil, []byte("access_token="+form[:keep]), tok, err)
			})
		}
	}
}

// assertNoCutToken fails if read, an answer cut short by the read limit,
// ends with the token's first characters (as they are or query-escaped)
// and err shows them, unless body had them itself.
func assertNoCutToken(t *testing.T, body, read []byte, tok string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, form := range []string{tok, url.QueryEscape(tok)} {
		for k := min(len(form), len(read)); k > 0; k-- {
			start := form[:k]
			if !bytes.HasSuffix(read, []byte(start)) {
				continue
			}
			if (k >= 4 || k == len(form)) && !bytes.Contains(body, []byte(start)) && strings.Contains(err.Error(), start) {
				t.Fatalf("the token's first %d characters, cut by the read limit, appear in %q", k, err)
			}
			break
		}
	}
}

// assertNoToken fails if the token, or a piece of it cut short by "…",
// appears in what err prints or in a log line carrying it (unless body had
// that piece itself).
func assertNoToken(t *testing.T, body []byte, tok string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var logLine bytes.Buffer
	slog.New(slog.NewJSONHandler(&logLine, nil)).Error("wawp call failed", "err", err)
	slog.New(slog.NewTextHandler(&logLine, nil)).Error("wawp call failed", "err", err)
	for _, line := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err), logLine.String()} {
		for _, form := range []string{tok, url.QueryEscape(tok)} {
			if strings.Contains(line, form) {
				t.Fatalf("the token %q appears in %q", form, line)
			}
			for k := 4; k < len(form); k++ {
				if cut := form[:k] + "…"; strings.Contains(line, cut) && !bytes.Contains(body, []byte(cut)) {
					t.Fatalf("the token's first %d characters appear in %q", k, line)
				}
			}
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"code":"ABCD-1234"}`, `{"status":"WORKING","me":{"id":"1@c.us"}}`, `{"statusCode":422,"message":["a","b"]}`, `<html>`, ``, `null`, `[]`, `{"code":{"x":1}}`,
		`{"message":"` + strings.Repeat("x", 195) + `"}`, strings.Repeat("x", 196) + " ", `{"code":"` + strings.Repeat("x", 55) + `"}`} {
		f.Add(200, []byte(s), uint16(len(s)), uint16(len(s)+8))
		f.Add(500, []byte(s), uint16(len(s)-2), uint16(len(s)+5))
		f.Add(500, []byte(s), uint16(0), uint16(12))
	}
	// Temp-link answers (a link is echoed into each at the position at
	// says, so these hold it too).
	for _, s := range []string{`{"link":"","expires_at":"2026-11-25T14:30:00Z"}`, `{"link":null}`, `{"data":{"link":{"url":""}}}`,
		`{"success":false,"message":""}`, `{"statusCode":403,"message":"not in your plan: "}`, `<html><a href=""></a></html>`} {
		f.Add(201, []byte(s), uint16(strings.Index(s, `""`)+1), uint16(len(s)+80))
		f.Add(500, []byte(s), uint16(strings.Index(s, `""`)+1), uint16(len(s)+40))
	}
	// Tokens as they are and with characters a URL escapes.
	tokens := []string{token, "tok/secret+123=&x"}
	// A QR page's token and link: a credential like the access token.
	const linkTok = "Zq3_0f9K-x7Lm2Pw8Rt5Yv1Bn4Cd6Ef0Gh2Ij4Kl6Mn8Op0Qr2St4Uv6Wx8Yz0A1"
	link := WawpLinkOrigin + "/temp-qr/" + linkTok
	f.Fuzz(func(t *testing.T, status int, body []byte, at, cut uint16) {
		for _, tok := range tokens {
			for _, echoed := range [][]byte{body, echo(body, tok, at), echo(body, url.QueryEscape(tok), at)} {
				// A long answer is cut at the read limit (64 KiB), perhaps
				// inside the token it echoes.
				limit := int(cut) % (len(echoed) + 1)
				cutRead, err := readAnswer(bytes.NewReader(echoed), limit, tok)
				if err != nil {
					t.Fatal(err)
				}
				for _, b := range [][]byte{echoed, cutRead} {
					checkTempLinkDecoders(t, status, b, tok, linkTok, body, echoed, limit)
					for _, withLink := range [][]byte{echo(b, link, at), echo(b, linkTok, at), echo(b, url.QueryEscape(link), at)} {
						checkTempLinkDecoders(t, status, withLink, tok, linkTok, body, echoed, limit)
					}
					code, cerr := decodeCode(status, b, tok)
					if cerr == nil && !pairingCode.MatchString(code) {
						t.Fatalf("decodeCode accepted %q", code)
					}
					_, serr := decodeSession(status, b, tok)
					for _, err := range []error{cerr, serr} {
						if err != nil {
							var aerr *APIError
							if !errors.As(err, &aerr) || aerr.Kind == nil {
								t.Fatalf("untyped error %v", err)
							}
						}
						assertNoToken(t, b, tok, err)
						if len(b) < len(echoed) {
							assertNoCutToken(t, body, echoed[:limit], tok, err)
						}
					}
					// A transport error: *url.Error prints the whole URL, and its
					// cause may quote the URL or an answer too.
					u := "https://api.wawp.net" + pathRequestCode + "?" + url.Values{"instance_id": {"INST00000001"}, "access_token": {tok}}.Encode()
					for _, cause := range []error{errors.New(string(b)), &url.Error{Op: "Get", URL: u, Err: errors.New(string(b))}, context.DeadlineExceeded} {
						terr := transportError(pathRequestCode, &url.Error{Op: "Post", URL: u, Err: cause}, tok)
						assertNoToken(t, b, tok, terr)
					}
				}
			}
		}
	})
}

// checkTempLinkDecoders decodes b as every temp-link answer: an error is
// typed and holds neither the access token nor 20 characters in a row of
// the QR page's token linkTok (unless the fuzzer's own body had them); a
// link is only ever accepted on Wawp's QR origin, and printing or logging
// it never shows it.
func checkTempLinkDecoders(t *testing.T, status int, b []byte, tok, linkTok string, body, echoed []byte, limit int) {
	t.Helper()
	l, ok, lerr := decodeTempLink(EndpointTempLinkCreate, status, b, tok, linkOrigins(DefaultBaseURL))
	if lerr == nil && ok && !validLink(l.URL, []string{WawpLinkOrigin}) {
		t.Fatalf("decodeTempLink accepted the link %q", l.URL)
	}
	if lerr == nil && !ok && l != (TempLink{}) {
		t.Fatalf("decodeTempLink found no link but returned %#v", l.ExpiresAt)
	}
	if lerr != nil && l != (TempLink{}) {
		t.Fatalf("decodeTempLink returned a link with the error %v", lerr)
	}
	if ok {
		var logLine bytes.Buffer
		slog.New(slog.NewJSONHandler(&logLine, nil)).Info("link", "link", l, "links", []TempLink{l})
		for _, line := range []string{fmt.Sprint(l), fmt.Sprintf("%#v", l), logLine.String()} {
			if strings.Contains(line, l.URL) {
				t.Fatalf("the link appears in %q", line)
			}
		}
	}
	rerr := decodeRevoke(EndpointTempLinkRevoke, status, b, tok)
	for _, err := range []error{lerr, rerr} {
		if err == nil {
			continue
		}
		var aerr *APIError
		if !errors.As(err, &aerr) || aerr.Kind == nil {
			t.Fatalf("untyped error %v", err)
		}
		assertNoToken(t, b, tok, err)
		assertNoLinkToken(t, body, linkTok, err)
		if len(b) < len(echoed) {
			assertNoCutToken(t, body, echoed[:limit], tok, err)
		}
	}
}

// echo is body with s inserted at a position chosen by at, as an answer
// quoting the token would have it.
func echo(body []byte, s string, at uint16) []byte {
	i := int(at) % (len(body) + 1)
	return append(append(append([]byte{}, body[:i]...), s...), body[i:]...)
}

// TestWawpRedirectNotFollowed: a 3xx from Wawp is an unreadable answer. On
// 307/308 Go would re-send the request (its URL carries the token, its body
// the phone) to whatever host Location names, https→http included, and
// request-code would reach Wawp twice. The second host must never be hit,
// whatever http.Client the caller hands in.
func TestWawpRedirectNotFollowed(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("redirect followed: %s %s reached the second host", r.Method, r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"code":"ABCD-1234","status":"SCAN_QR_CODE"}`)
	}))
	defer other.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			var hits atomic.Int32
			redirect := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				http.Redirect(w, r, other.URL+r.URL.RequestURI(), status)
			})
			overTLS := httptest.NewTLSServer(redirect) // https → http
			defer overTLS.Close()
			plain := httptest.NewServer(redirect)
			defer plain.Close()
			clients := []struct {
				name string
				url  string
				http *http.Client
			}{
				{"caller's client", overTLS.URL, overTLS.Client()},
				{"caller's client that follows redirects", overTLS.URL, withCheckRedirect(overTLS.Client())},
				{"default client", plain.URL, nil},
			}
			for _, hc := range clients {
				hits.Store(0)
				c := NewClient(hc.url, token, hc.http)
				code, err := c.RequestCode(context.Background(), "INST00000001", "201112223333")
				var aerr *APIError
				if code != "" || !errors.As(err, &aerr) || !errors.Is(err, ErrBadResponse) || aerr.Status != status {
					t.Errorf("%s: RequestCode = %q, %v; want an unreadable-answer error with HTTP %d", hc.name, code, err, status)
				}
				if _, err := c.SessionInfo(context.Background(), "INST00000001"); !errors.Is(err, ErrBadResponse) {
					t.Errorf("%s: SessionInfo err = %v, want ErrBadResponse", hc.name, err)
				}
				if n := hits.Load(); n != 2 {
					t.Errorf("%s: Wawp was called %d times, want 2 (once per call)", hc.name, n)
				}
			}
		})
	}
}

// withCheckRedirect is a caller's client that explicitly follows redirects.
func withCheckRedirect(hc *http.Client) *http.Client {
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return nil }
	return hc
}

// TestWawpRequestShape: the token is sent once. instance_id and
// access_token travel in the query string, the call's own fields in a JSON
// body, as Wawp's request-code sample does (/work/shared/seed-wawp-request-code.txt;
// DESIGN.md "Wawp facts").
func TestWawpRequestShape(t *testing.T) {
	type seen struct {
		Method, Path, ContentType string
		Query                     url.Values
		Body                      map[string]any
		TokenCount                int
	}
	var got []seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("%s: body %q is not a JSON object: %v", r.URL.Path, raw, err)
		}
		var dump strings.Builder
		r.Header.Write(&dump)
		all := r.URL.String() + "\n" + dump.String() + "\n" + string(raw)
		got = append(got, seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.URL.Query(), body, strings.Count(all, token)})
		io.WriteString(w, `{"code":"ABCD-1234","status":"SCAN_QR_CODE"}`)
	}))
	defer srv.Close()
	c := NewClient(srv.URL, token, srv.Client())
	if _, err := c.SessionInfo(context.Background(), "INST00000001"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RequestCode(context.Background(), "INST00000001", "201112223333"); err != nil {
		t.Fatal(err)
	}
	query := url.Values{"instance_id": {"INST00000001"}, "access_token": {token}}
	want := []seen{
		{"POST", "/v2/session/info", "application/json", query, map[string]any{}, 1},
		{"POST", "/v2/auth/request-code", "application/json", query, map[string]any{"phone_number": "201112223333"}, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
