package storetest

import (
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
