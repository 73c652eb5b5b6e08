package pairing_test

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/linkbot/linkbot/pairing"
)

// TestObserveStorage: every Storage method of the wrapper calls the
// storage's and reports itself by name with the error it returned (here
// each is called with a cancelled context, which every storage answers
// with ctx.Err() and nothing changed); a service over the wrapper reports
// what it asks, successes with a nil error.
func TestObserveStorage(t *testing.T) {
	r := newRig(t, pairing.Config{})
	type report struct {
		Call string
		Err  error
	}
	var (
		mu      sync.Mutex
		reports []report
	)
	db := pairing.ObserveStorage(r.db, func(call string, took time.Duration, err error) {
		if took < 0 {
			t.Errorf("%s took %s", call, took)
		}
		mu.Lock()
		reports = append(reports, report{call, err})
		mu.Unlock()
	})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	iface := reflect.TypeFor[pairing.Storage]()
	v := reflect.ValueOf(db)
	var want []string
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		args := []reflect.Value{reflect.ValueOf(ctx)}
		for j := 1; j < m.Type.NumIn(); j++ {
			args = append(args, reflect.Zero(m.Type.In(j)))
		}
		v.MethodByName(m.Name).Call(args)
		want = append(want, m.Name)
	}
	var got []string
	for _, rep := range reports {
		got = append(got, rep.Call)
		if !errors.Is(rep.Err, context.Canceled) {
			t.Errorf("%s reported %v, want the storage's context.Canceled", rep.Call, rep.Err)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("calls reported (-want +got):\n%s", diff)
	}

	reports = nil
	svc := pairing.NewService(r.wawp, db, pairing.Config{Now: r.clock.Now})
	if _, err := svc.Start(context.Background(), request(inst1, digits, "U1")); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Pairing(context.Background(), "nope"); !errors.Is(err, pairing.ErrNotFound) {
		t.Fatal(err)
	}
	if !slices.Equal([]report{{"Reserve", nil}, {"Settle", nil}}, reports[:2]) || reports[2].Call != "Pairing" || !errors.Is(reports[2].Err, pairing.ErrNotFound) {
		t.Errorf("reports of a Start and a missing pairing: %+v", reports)
	}
}
