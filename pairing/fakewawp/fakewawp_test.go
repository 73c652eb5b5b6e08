package fakewawp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func post(t *testing.T, s *Server, path, instance, token, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.URL+path+"?instance_id="+instance+"&access_token="+token, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func TestFakeEnforcesWawpRules(t *testing.T) {
	s := New("tok")
	defer s.Close()
	s.AddInstance("INST00000001", "")
	phone := `{"phone_number":"201112223333"}`
	if st, _ := post(t, s, RequestCode, "INST00000001", "bad", phone); st != 401 {
		t.Errorf("bad token: HTTP %d, want 401", st)
	}
	if st, _ := post(t, s, RequestCode, "NOSUCH", "tok", phone); st != 404 {
		t.Errorf("unknown instance: HTTP %d, want 404", st)
	}
	if st, _ := post(t, s, RequestCode, "INST00000001", "tok", `{"phone_number":"+20 111"}`); st != 400 {
		t.Errorf("non-digit phone: HTTP %d, want 400", st)
	}
	s.WarmUp("INST00000001", time.Hour)
	if st, _ := post(t, s, RequestCode, "INST00000001", "tok", phone); st != 422 {
		t.Errorf("warming up: HTTP %d, want 422", st)
	}
	if _, m := post(t, s, SessionInfo, "INST00000001", "tok", `{}`); m["status"] != "STARTING" {
		t.Errorf("warming up: status %v, want STARTING", m["status"])
	}
	s.WarmUp("INST00000001", 0)
	st, m := post(t, s, RequestCode, "INST00000001", "tok", phone)
	code, _ := m["code"].(string)
	if st != 200 || len(code) != 9 || code[4] != '-' {
		t.Fatalf("request-code: HTTP %d %v", st, m)
	}
	if err := s.EnterCode("INST00000001", "WRONG-CODE"); err == nil {
		t.Error("wrong code accepted")
	}
	if err := s.EnterCode("INST00000001", code); err != nil {
		t.Fatal(err)
	}
	_, m = post(t, s, SessionInfo, "INST00000001", "tok", `{}`)
	if me, _ := m["me"].(map[string]any); m["status"] != "WORKING" || me["id"] != "201112223333@c.us" {
		t.Errorf("after entering the code: %v", m)
	}
}

func TestFakeLocksOutAPhone(t *testing.T) {
	s := New("tok")
	defer s.Close()
	s.AddInstance("INST00000001", "")
	s.SetLockout(2, time.Hour)
	for i := range 3 {
		_, m := post(t, s, RequestCode, "INST00000001", "tok", `{"phone_number":"201112223333"}`)
		if i < 2 && m["code"] == "rate-overlimit" {
			t.Fatalf("locked out after %d requests", i+1)
		}
		if i == 2 && m["code"] != "rate-overlimit" {
			t.Fatalf("3rd request over a limit of 2: %v, want the lock-out", m)
		}
	}
	if !s.LockedOut("201112223333") {
		t.Error("phone not reported as locked out")
	}
}

// call sends method to path with a body (none when body is nil) as
// contentType, and decodes the JSON answer.
func call(t *testing.T, s *Server, method, path, instance, token, contentType string, body []byte) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+path+"?instance_id="+instance+"&access_token="+token, rd)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestFakeTempLink: temp-link as Wawp documents it, on the fake's clock.
func TestFakeTempLink(t *testing.T) {
	now := time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)
	var clock atomic.Pointer[time.Time]
	clock.Store(&now)
	s := New("tok")
	defer s.Close()
	s.SetClock(func() time.Time { return *clock.Load() })
	s.AddInstance("INST00000001", "")
	const inst = "INST00000001"
	obj := []byte(`{}`)
	create := func() string {
		t.Helper()
		st, m := call(t, s, "POST", TempLink, inst, "tok", "application/json", obj)
		link, _ := m["link"].(string)
		if st != 201 || !strings.HasPrefix(link, s.URL+"/temp-qr/") || len(link) != len(s.URL)+len("/temp-qr/")+64 {
			t.Fatalf("POST temp-link: HTTP %d %v", st, m)
		}
		if want := clock.Load().Add(30 * time.Minute).Format(time.RFC3339); m["expires_at"] != want {
			t.Errorf("POST temp-link: expires_at %v, want %s (30 minutes)", m["expires_at"], want)
		}
		return link
	}
	active := func() any {
		t.Helper()
		st, m := call(t, s, "GET", TempLink, inst, "tok", "", nil)
		if st != 200 {
			t.Fatalf("GET temp-link: HTTP %d %v", st, m)
		}
		v, ok := m["link"]
		if !ok {
			t.Fatalf("GET temp-link: no link key in %v", m)
		}
		return v
	}
	if v := active(); v != nil {
		t.Errorf("GET before any POST: link %v, want null", v)
	}
	first := create()
	if v := active(); v != first || s.ActiveLink(inst) != first {
		t.Errorf("GET after POST: %v (ActiveLink %q), want %s", v, s.ActiveLink(inst), first)
	}
	if page := get(t, first); page != 200 {
		t.Errorf("opening the link: HTTP %d, want 200", page)
	}
	second := create()
	if second == first || active() != second {
		t.Errorf("a second POST: %s, active %v; want a new link, active", second, active())
	}
	if err := s.ScanLink(first, "201112223333"); err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Errorf("scanning the replaced link: %v, want it refused as replaced", err)
	}
	if page := get(t, first); page != 410 {
		t.Errorf("opening the replaced link: HTTP %d, want 410", page)
	}
	if st, m := call(t, s, "DELETE", TempLink, inst, "tok", "application/json", obj); st != 200 || m["success"] != true {
		t.Errorf("DELETE temp-link: HTTP %d %v", st, m)
	}
	if v := active(); v != nil || s.ActiveLink(inst) != "" {
		t.Errorf("GET after DELETE: %v, want null", v)
	}
	if err := s.ScanLink(second, "201112223333"); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("scanning the revoked link: %v, want it refused as revoked", err)
	}
	third := create()
	later := now.Add(30*time.Minute - time.Second)
	clock.Store(&later)
	if active() != third {
		t.Errorf("a second before 30 minutes: the link no longer active")
	}
	end := now.Add(30 * time.Minute)
	clock.Store(&end)
	if v := active(); v != nil || s.ActiveLink(inst) != "" {
		t.Errorf("30 minutes after the POST: active %v, want null", v)
	}
	if err := s.ScanLink(third, "201112223333"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("scanning an expired link: %v, want it refused as expired", err)
	}
	var methods []string
	for _, c := range s.Calls(TempLink) {
		methods = append(methods, c.Method)
	}
	if want := []string{"GET", "POST", "GET", "POST", "GET", "DELETE", "GET", "POST", "GET", "GET"}; !slices.Equal(methods, want) {
		t.Errorf("calls recorded: %v, want %v", methods, want)
	}
}

// get opens url (a QR page) and returns the HTTP status.
func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestFakeScanLinkLinksAndReplays: scanning a link links the instance
// with the scanning phone as me.id; the link goes on working after that
// (a replay, once the session is logged out) until it is revoked.
func TestFakeScanLinkLinksAndReplays(t *testing.T) {
	s := New("tok")
	defer s.Close()
	s.AddInstance("INST00000001", "")
	_, m := call(t, s, "POST", TempLink, "INST00000001", "tok", "application/json", []byte(`{}`))
	link := m["link"].(string)
	if err := s.ScanLink(link, "+20 111"); err == nil {
		t.Error("a phone that is not digits linked")
	}
	if err := s.ScanLink(link, "201112223333"); err != nil {
		t.Fatal(err)
	}
	_, m = post(t, s, SessionInfo, "INST00000001", "tok", `{}`)
	if me, _ := m["me"].(map[string]any); m["status"] != "WORKING" || me["id"] != "201112223333@c.us" {
		t.Errorf("after scanning the link: %v", m)
	}
	if err := s.ScanLink(link, "201009998888"); err == nil {
		t.Error("a working session was linked again")
	}
	s.SetStatus("INST00000001", "SCAN_QR_CODE", "") // logged out
	if err := s.ScanLink(link, "201009998888"); err != nil {
		t.Errorf("replaying the unrevoked link after a logout: %v; the fake must allow it, as Wawp does", err)
	}
	s.SetStatus("INST00000001", "SCAN_QR_CODE", "")
	call(t, s, "DELETE", TempLink, "INST00000001", "tok", "application/json", []byte(`{}`))
	if err := s.ScanLink(link, "201009998888"); err == nil {
		t.Error("a revoked link was replayed")
	}
	s.AddInstance("INST00000002", "STARTING")
	_, m = call(t, s, "POST", TempLink, "INST00000002", "tok", "application/json", []byte(`{}`))
	if err := s.ScanLink(m["link"].(string), "201112223333"); err == nil {
		t.Error("a session that is starting was linked")
	}
}

// TestFakeTempLinkStrict: temp-link keeps the rules of the other
// endpoints, and a plan without temporary links is refused with a 403
// that says so.
func TestFakeTempLinkStrict(t *testing.T) {
	s := New("tok")
	defer s.Close()
	s.AddInstance("INST00000001", "")
	s.AddInstance("INST00000002", "")
	s.SetToken("INST00000002", "other")
	obj := []byte(`{}`)
	tests := []struct {
		name, method, instance, token, ctype string
		body                                 []byte
		want                                 int
	}{
		{"bad token", "POST", "INST00000001", "bad", "application/json", obj, 401},
		{"another account's instance", "POST", "INST00000002", "tok", "application/json", obj, 401},
		{"no such instance", "GET", "NOSUCH", "tok", "", nil, 404},
		{"form body", "POST", "INST00000001", "tok", "application/x-www-form-urlencoded", []byte("a=b"), 400},
		{"no body", "POST", "INST00000001", "tok", "application/json", nil, 400},
		{"body not an object", "DELETE", "INST00000001", "tok", "application/json", []byte(`[]`), 400},
		{"DELETE without JSON type", "DELETE", "INST00000001", "tok", "", obj, 400},
		{"GET with a body", "GET", "INST00000001", "tok", "application/json", obj, 400},
		{"PUT", "PUT", "INST00000001", "tok", "application/json", obj, 405},
		{"the instance's own token", "POST", "INST00000002", "other", "application/json", obj, 201},
	}
	for _, tt := range tests {
		if st, m := call(t, s, tt.method, TempLink, tt.instance, tt.token, tt.ctype, tt.body); st != tt.want {
			t.Errorf("%s: HTTP %d %v, want %d", tt.name, st, m, tt.want)
		}
	}
	if s.ActiveLink("INST00000001") != "" {
		t.Error("a refused call made a link")
	}
	s.DisableTempLinks("INST00000001")
	for _, method := range []string{"POST", "GET", "DELETE"} {
		var body []byte
		ctype := ""
		if method != "GET" {
			body, ctype = obj, "application/json"
		}
		st, m := call(t, s, method, TempLink, "INST00000001", "tok", ctype, body)
		if msg, _ := m["message"].(string); st != 403 || !strings.Contains(msg, "plan") {
			t.Errorf("%s on a plan without temp links: HTTP %d %v, want 403 saying why", method, st, m)
		}
	}
	s.FailNext("INST00000002", TempLinkRevoke, Failure{Status: 502, Body: "Bad Gateway", ContentType: "text/plain"})
	if st, _ := call(t, s, "POST", TempLink, "INST00000002", "other", "application/json", obj); st != 201 {
		t.Errorf("a failure queued for DELETE hit POST: HTTP %d", st)
	}
	if st, _ := call(t, s, "DELETE", TempLink, "INST00000002", "other", "application/json", obj); st != 502 {
		t.Errorf("queued DELETE failure: HTTP %d, want 502", st)
	}
	if s.ActiveLink("INST00000002") == "" {
		t.Error("a failed DELETE revoked the link")
	}
}
