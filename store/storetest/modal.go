package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// The live code window (issue 10): a pairing's modal surface, its view ID
// and hash, is stored with it like its DM and card.

var modalCases = []testCase{
	{"the window is kept with its pairing, across restarts and its end", testModalKept},
	{"the window's view is claimed like any surface's", testModalClaim},
	{"RecordModal watches its pairing and refuses a superseded one", testRecordModal},
	{"a renewal takes the window it carries; one it does not stays watched", testModalRenewed},
	{"a refused renewal leaves watched an old pairing that ended with a window of its own", testModalEndedMeanwhile},
}

// testModalEndedMeanwhile: a window is recorded on a pairing while its
// renewal is between Reserve and Settle, and the pairing then ends on its
// own (linked, shown in its message); the renewal is refused. The old
// pairing keeps its final state and stays watched: its window still shows
// the code until the Slack edge shows there how it ended.
func testModalEndedMeanwhile(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	r := reservation("b", "I1", phone(1), "U1", t0.Add(10*time.Second))
	r.Replaces, r.Pairing.Renews, r.Pairing.Message = "a", "a", "a"
	reserve(t, s, r)
	window := pairing.ModalSurface{ViewID: "V1", Hash: "h1", User: "U1", LastView: "live:0"}
	if _, err := s.RecordModal(t.Context(), "a", window, t0.Add(11*time.Second), false); err != nil {
		t.Fatal(err)
	}
	endLive(t, s, "a", t0.Add(12*time.Second), pairing.StateLinked, false)
	at := t0.Add(13 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Change: toState(pairing.StateFailed, at), Replaced: "a"}); err != nil {
		t.Fatal(err)
	}
	a := mustPairing(t, s, "a")
	if a.State != pairing.StateLinked || a.Modal != window {
		t.Errorf("a is %s with window %+v; want linked with %+v", a.State, a.Modal, window)
	}
	watched, err := s.WatchedPairings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range watched {
		found = found || p.ID == "a"
	}
	if !found {
		t.Errorf("a is not watched (%d watched); its window still shows the code", len(watched))
	}
}

// testModalRenewed: when a renewal supersedes a pairing, a window the
// renewal carries (the same view) is closed on the old pairing (it is the
// renewal's now), and the old pairing is unwatched as before; a window
// recorded on the old pairing after the renewal was reserved (it does not
// carry it) keeps the old pairing watched, so that its window is told.
func testModalRenewed(t *testing.T, open func(*testing.T) Harness) {
	for _, carried := range []bool{true, false} {
		t.Run(map[bool]string{true: "carried", false: "recorded meanwhile"}[carried], func(t *testing.T) {
			s := open(t).Storage
			live(t, s, reservation("a", "I1", phone(1), "U1", t0))
			window := pairing.ModalSurface{ViewID: "V1", Hash: "h1", User: "U1", LastView: "live:0"}
			r := reservation("b", "I1", phone(1), "U1", t0.Add(10*time.Second))
			r.Replaces, r.Pairing.Renews, r.Pairing.Message = "a", "a", "a"
			if carried {
				if _, err := s.RecordModal(t.Context(), "a", window, t0, false); err != nil {
					t.Fatal(err)
				}
				r.Pairing.Modal = window
			}
			reserve(t, s, r)
			if !carried {
				if _, err := s.RecordModal(t.Context(), "a", window, t0.Add(11*time.Second), false); err != nil {
					t.Fatal(err)
				}
			}
			at := t0.Add(12 * time.Second)
			if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "b", Now: at, Counted: true, Change: toState(pairing.StateLive, at), Replaced: "a"}); err != nil {
				t.Fatal(err)
			}
			a := mustPairing(t, s, "a")
			if a.State != pairing.StateSuperseded {
				t.Fatalf("a is %s, want superseded", a.State)
			}
			if carried {
				if a.Modal.Open() || !mustPairing(t, s, "b").Modal.Open() {
					t.Errorf("a's window %+v, b's %+v; want it closed on a, open on b", a.Modal, mustPairing(t, s, "b").Modal)
				}
				checkWatched(t, s, "b")
				return
			}
			if a.Modal != window {
				t.Errorf("a's window %+v, want %+v", a.Modal, window)
			}
			checkWatched(t, s, "a", "b")
		})
	}
}

// testRecordModal: a window recorded on a pairing that ended and stopped
// being watched meanwhile watches it again (its final state is still to
// be shown there); a closed one does not. A superseded pairing is refused
// (ErrReplaced, nothing changed) unless the caller says it knows; then
// the window is recorded, watched, and its claim (only its) may win.
func testRecordModal(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	endLive(t, s, "a", t0.Add(time.Second), pairing.StateCancelled, true)
	checkWatched(t, s)
	window := pairing.ModalSurface{ViewID: "V1", Hash: "h1", User: "U1", LastView: "live:0"}
	p, err := s.RecordModal(t.Context(), "a", window, t0.Add(2*time.Second), false)
	if err != nil || p.Modal != window {
		t.Fatalf("RecordModal on an ended pairing = %+v, %v; want it recorded", p.Modal, err)
	}
	checkWatched(t, s, "a")
	if err := s.RecordView(t.Context(), "a", "cancelled", true); err != nil {
		t.Fatal(err)
	}
	window.Closed = true
	if _, err := s.RecordModal(t.Context(), "a", window, t0.Add(3*time.Second), false); err != nil {
		t.Fatal(err)
	}
	checkWatched(t, s)

	live(t, s, reservation("b", "I2", phone(2), "U1", t0))
	r := reservation("c", "I2", phone(2), "U1", t0.Add(10*time.Second))
	r.Replaces, r.Pairing.Renews, r.Pairing.Message = "b", "b", "b"
	reserve(t, s, r)
	at := t0.Add(12 * time.Second)
	if _, err := s.Settle(t.Context(), pairing.Settlement{ID: "c", Now: at, Counted: true, Change: toState(pairing.StateLive, at), Replaced: "b"}); err != nil {
		t.Fatal(err)
	}
	checkWatched(t, s, "c")
	other := pairing.ModalSurface{ViewID: "V2", Hash: "h2", User: "U1", LastView: "live:0"}
	if _, err := s.RecordModal(t.Context(), "b", other, at, false); !errors.Is(err, pairing.ErrReplaced) {
		t.Errorf("RecordModal on a superseded pairing: %v, want ErrReplaced", err)
	}
	if got := mustPairing(t, s, "b"); got.Modal.Open() {
		t.Errorf("the refused window was recorded: %+v", got.Modal)
	}
	checkWatched(t, s, "c")
	if p, err := s.RecordModal(t.Context(), "b", other, at, true); err != nil || p.Modal != other {
		t.Fatalf("RecordModal on a pairing known superseded = %+v, %v", p.Modal, err)
	}
	checkWatched(t, s, "b", "c")
	claimView(t, s, claim("b", pairing.SurfaceModal, "live:0", "superseded", "T-modal", at), true, "the superseded pairing's window")
	claimView(t, s, claim("b", pairing.SurfaceDM, "", "dm:x", "T-dm", at), false, "the superseded pairing's DM")
}

// testModalKept: a window recorded with UpdatePairing is read back as
// recorded, is watched with its pairing, survives a restart, and stays
// when the pairing ends (its final state is still shown there) while the
// code is wiped.
func testModalKept(t *testing.T, open func(*testing.T) Harness) {
	h := open(t)
	s := h.Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	window := pairing.ModalSurface{ViewID: "V0123456789", Hash: "1700000000.abcdef", User: "U1", LastView: "live:0"}
	p, err := s.UpdatePairing(t.Context(), "a", t0, func(p *pairing.Pairing) error { p.Modal = window; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(window, p.Modal); diff != "" {
		t.Errorf("UpdatePairing's answer (-want +got):\n%s", diff)
	}
	s = h.Restart(t)
	got := mustPairing(t, s, "a")
	if diff := cmp.Diff(window, got.Modal); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
	if !got.Modal.Open() || got.View(pairing.SurfaceModal) != "live:0" {
		t.Errorf("Open() = %v, View = %q", got.Modal.Open(), got.View(pairing.SurfaceModal))
	}
	watched, err := s.WatchedPairings(t.Context())
	if err != nil || len(watched) != 1 || watched[0].Modal != window {
		t.Errorf("WatchedPairings = %+v, %v; want the pairing with its window", watched, err)
	}
	ended, err := s.UpdatePairing(t.Context(), "a", t0.Add(time.Minute), func(p *pairing.Pairing) error {
		p.State, p.EndedAt = pairing.StateCancelled, t0.Add(time.Minute)
		p.Modal.Closed = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	window.Closed = true
	if ended.Code != "" || ended.Modal != window || mustPairing(t, s, "a").Modal != window {
		t.Errorf("ended: code %q, window %+v; want no code and the window kept (closed)", ended.Code, ended.Modal)
	}
}

// testModalClaim: the modal is a surface of its own (SurfaceModal): its
// claim is independent of the others', and finishing it records the view
// it shows, keeping the window's view ID, hash and user.
func testModalClaim(t *testing.T, open func(*testing.T) Harness) {
	s := open(t).Storage
	live(t, s, reservation("a", "I1", phone(1), "U1", t0))
	window := pairing.ModalSurface{ViewID: "V1", Hash: "h1", User: "U1", LastView: "live:0"}
	if _, err := s.UpdatePairing(t.Context(), "a", t0, func(p *pairing.Pairing) error { p.Modal = window; return nil }); err != nil {
		t.Fatal(err)
	}
	claimView(t, s, claim("a", pairing.SurfaceModal, "live:0", "live:1", "T-modal", t0), true, "the window's edit")
	claimView(t, s, claim("a", pairing.SurfaceModal, "live:0", "live:1", "T-again", t0), false, "the same edit again")
	claimView(t, s, claim("a", pairing.SurfaceDM, "", "dm:live:0", "T-dm", t0), true, "the DM's, beside it")
	finishView(t, s, "a", pairing.SurfaceModal, "T-modal", "live:1", false, true, "the window's")
	window.LastView = "live:1"
	if diff := cmp.Diff(window, mustPairing(t, s, "a").Modal); diff != "" {
		t.Errorf("window after its edit (-want +got):\n%s", diff)
	}
}
