//go:build !race

package faults_test

// raceEnabled reports whether the test binary runs under the race detector.
const raceEnabled = false
