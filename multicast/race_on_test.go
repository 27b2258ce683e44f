//go:build race

package multicast

// raceEnabled: the race detector multiplies memory use, so RSS bounds are
// only logged.
const raceEnabled = true
