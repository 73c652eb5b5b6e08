//go:build race

package pairing

// raceEnabled: the race detector slows regular expressions (and so
// libphonenumber) about fifteen-fold; long sweeps dial fewer numbers then.
const raceEnabled = true
