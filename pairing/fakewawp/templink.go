package fakewawp

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Temporary QR links, as Wawp documents /v2/session/temp-link: POST makes
// a hosted QR page, {origin}/temp-qr/{64-character token}, valid for
// TempLinkLifetime, answered with its expiry, and expires the instance's
// older link; GET answers the active link or {"link": null}; DELETE
// revokes every active link of the instance. A link stays usable after a
// phone linked through it, until it is revoked or expires: that is why
// Wawp says "Call DELETE after a successful connection to prevent
// replay", and ScanLink lets a test replay one.
//
// The rules the other endpoints follow hold here too: the token (the
// instance's account's), an existing instance, and for POST and DELETE a
// JSON object body sent as application/json; GET takes no body. An
// instance whose account's plan has no temporary links
// (DisableTempLinks) is answered 403 on all three.

// Temp-link endpoints: TempLink is the path; FailNext and FailAlways take
// the method-qualified names.
const (
	TempLink       = "/v2/session/temp-link"
	TempLinkCreate = http.MethodPost + " " + TempLink
	TempLinkGet    = http.MethodGet + " " + TempLink
	TempLinkRevoke = http.MethodDelete + " " + TempLink
)

// TempLinkLifetime is how long a temporary link stays valid.
const TempLinkLifetime = 30 * time.Minute

// qrPagePath is where the hosted QR pages are served.
const qrPagePath = "/temp-qr/"

type tempLink struct {
	token   string
	expires time.Time
}

// Why a link no longer works.
const (
	endedRevoked  = "revoked"
	endedReplaced = "replaced by a newer link"
)

// DisableTempLinks puts instance on a plan without temporary links: the
// three temp-link calls are answered 403 with a message.
func (s *Server) DisableTempLinks(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if in := s.instances[id]; in != nil {
		in.noTempLinks = true
	}
}

// SetLinkOrigin makes new links point to origin (scheme://host) instead
// of the fake's own URL: Wawp's (https://app.wawp.net), or another host a
// client must refuse.
func (s *Server) SetLinkOrigin(origin string) {
	s.mu.Lock()
	s.linkOrigin = strings.TrimRight(origin, "/")
	s.mu.Unlock()
}

// ActiveLink is instance's temporary link that works now (not revoked,
// replaced or expired on the fake's clock), or "".
func (s *Server) ActiveLink(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.instances[id]
	if in == nil || !s.linkWorks(in, s.now()) {
		return ""
	}
	return s.linkURL(in.link)
}

// ScanLink simulates a phone owner opening link and scanning its QR code
// with WhatsApp: if the link works and the instance is waiting for a
// phone (SCAN_QR_CODE), the session becomes WORKING with phone (digits,
// country code first) as me.id. The link stays usable until it is revoked
// or expires.
func (s *Server) ScanLink(link, phone string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	token, err := linkToken(link)
	if err != nil {
		return err
	}
	if why := s.ended[token]; why != "" {
		return fmt.Errorf("the link was %s", why)
	}
	now := s.now()
	for _, in := range s.instances {
		if in.link == nil || in.link.token != token {
			continue
		}
		if !now.Before(in.link.expires) {
			return errors.New("the link expired")
		}
		if in.status != "SCAN_QR_CODE" || now.Before(in.warmUntil) {
			return fmt.Errorf("the session is %s, not waiting for a QR scan", in.status)
		}
		if phone == "" || strings.Trim(phone, "0123456789") != "" {
			return fmt.Errorf("phone %q: want digits, country code first", phone)
		}
		in.status, in.me, in.code = "WORKING", phone, ""
		return nil
	}
	return errors.New("no such link")
}

// linkToken is the token of a QR page's link.
func linkToken(link string) (string, error) {
	u, err := url.Parse(link)
	if err != nil {
		return "", err
	}
	token, ok := strings.CutPrefix(u.Path, qrPagePath)
	if !ok || len(token) != 64 {
		return "", fmt.Errorf("%s is not a QR page", link)
	}
	return token, nil
}

// linkWorks says whether in has a link that works at now (s.mu held).
func (s *Server) linkWorks(in *instance, now time.Time) bool {
	return in.link != nil && now.Before(in.link.expires)
}

// linkURL is link's QR page (s.mu held).
func (s *Server) linkURL(l *tempLink) string { return s.linkOrigin + qrPagePath + l.token }

// endLink ends in's link, if any, for why (s.mu held).
func (s *Server) endLink(in *instance, why string) {
	if in.link != nil {
		s.ended[in.link.token] = why
		in.link = nil
	}
}

// tempLink answers the temp-link calls (s.mu held; token, instance and
// injected failures already checked).
func (s *Server) tempLink(r *http.Request, body []byte, in *instance, now time.Time) (int, string, string, bool) {
	if in.noTempLinks {
		return http.StatusForbidden, "", jsonBody(map[string]any{"statusCode": 403, "message": "Temporary access links are not available on your plan", "error": "Forbidden"}), false
	}
	if r.Method == http.MethodGet {
		if len(body) > 0 {
			return http.StatusBadRequest, "", jsonBody(map[string]any{"statusCode": 400, "message": "GET takes no body", "error": "Bad Request"}), false
		}
	} else {
		if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			return http.StatusBadRequest, "", jsonBody(map[string]any{"statusCode": 400, "message": "Content-Type must be application/json", "error": "Bad Request"}), false
		}
		var fields map[string]any
		if json.Unmarshal(body, &fields) != nil || fields == nil {
			return http.StatusBadRequest, "", jsonBody(map[string]any{"statusCode": 400, "message": "body must be a JSON object", "error": "Bad Request"}), false
		}
	}
	switch r.Method {
	case http.MethodPost:
		s.endLink(in, endedReplaced)
		b := make([]byte, 32)
		rand.Read(b)
		in.link = &tempLink{token: hex.EncodeToString(b), expires: now.Add(TempLinkLifetime)}
		return http.StatusCreated, "", jsonBody(map[string]any{"link": s.linkURL(in.link), "expires_at": in.link.expires.UTC().Format(time.RFC3339)}), false
	case http.MethodGet:
		if !s.linkWorks(in, now) {
			return http.StatusOK, "", `{"link":null}`, false
		}
		return http.StatusOK, "", jsonBody(map[string]any{"link": s.linkURL(in.link), "expires_at": in.link.expires.UTC().Format(time.RFC3339)}), false
	default: // DELETE
		s.endLink(in, endedRevoked)
		return http.StatusOK, "", jsonBody(map[string]any{"success": true, "message": "Temporary links revoked"}), false
	}
}

// qrPage answers a browser opening a link (s.mu held): a page saying to
// scan the QR code while the link works, 410 Gone after.
func (s *Server) qrPage(r *http.Request, now time.Time) (int, string, string, bool) {
	token := strings.TrimPrefix(r.URL.Path, qrPagePath)
	if r.Method != http.MethodGet {
		return http.StatusMethodNotAllowed, "text/plain", "method not allowed", false
	}
	for id, in := range s.instances {
		if in.link != nil && in.link.token == token && now.Before(in.link.expires) {
			return http.StatusOK, "text/html", "<html><body><h1>Link WhatsApp to " + html.EscapeString(id) +
				"</h1><p>(fake Wawp) Open WhatsApp → Settings → Linked devices → Link a device, and scan the QR code.</p></body></html>", false
		}
	}
	return http.StatusGone, "text/html", "<html><body><h1>This link has expired or was revoked.</h1></body></html>", false
}
