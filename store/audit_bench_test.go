package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/linkbot/linkbot/pairing"
)

// seedEnd is the time of the newest seeded audit event.
var seedEnd = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

const (
	seedPhones    = 5000
	seedInstances = 20
	seedSpan      = 30 * 24 * time.Hour
)

func seedPhone(i int) string { return fmt.Sprintf("2010%08d", i%seedPhones) }

// seedAudit fills a NoSync database with n audit events spread evenly over
// the 30 days before seedEnd, over 5,000 phones and 20 instances, written
// 10,000 to a transaction (the fast path: one AppendAudit per event would
// take minutes).
func seedAudit(b *testing.B, n int) *DB {
	b.Helper()
	db, err := Open(filepath.Join(b.TempDir(), "audit.db"), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	step := seedSpan / time.Duration(n)
	start := seedEnd.Add(-seedSpan)
	const chunk = 10_000
	for lo := 0; lo < n; lo += chunk {
		err := db.bolt.Update(func(tx *bolt.Tx) error {
			for i := lo; i < min(lo+chunk, n); i++ {
				digits := seedPhone(i)
				e := pairing.Event{
					Time: start.Add(time.Duration(i+1) * step), Kind: "code_issued", User: fmt.Sprintf("U%04d", i%300), Team: "T0LINKBOT",
					Channel: "C0SUPPORT", Instance: fmt.Sprintf("inst-%02d", i%seedInstances), Phone: "+20 10 ••• " + digits[len(digits)-4:],
					Digits: digits, Pairing: fmt.Sprintf("p%016d", i), Outcome: "",
				}
				if err := appendAudit(tx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	return db
}

// BenchmarkAuditQueries measures the audit log's readers over 500,000
// events (30 days) as the bot and `linkbot audit` call them: /link history
// for one phone (its last 10 events), `linkbot audit --phone` and
// `--instance` over the default 24 h with the default limit of 1,000, and
// `linkbot audit --since 720h` over the whole log (the newest 1,000).
//
//	go test -run XXX -bench AuditQueries -benchtime 100x ./store
func BenchmarkAuditQueries(b *testing.B) {
	db := seedAudit(b, 500_000)
	dayAgo := seedEnd.Add(-24 * time.Hour)
	tests := []struct {
		name string
		q    pairing.AuditQuery
	}{
		{"history", pairing.AuditQuery{Phone: seedPhone(42), Limit: 10}},
		{"audit_phone_24h", pairing.AuditQuery{Phone: seedPhone(42), Since: dayAgo, Limit: 1000}},
		{"audit_instance_24h", pairing.AuditQuery{Instances: []string{"inst-07"}, Since: dayAgo, Limit: 1000}},
		{"audit_since_720h", pairing.AuditQuery{Since: seedEnd.Add(-seedSpan), Limit: 1000}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				events, _, err := db.Audit(b.Context(), tt.q)
				if err != nil || len(events) == 0 {
					b.Fatalf("%d events, %v", len(events), err)
				}
			}
		})
	}
}
