package fakewawp

import (
	"encoding/json"
	"net/http"
	"strings"
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
