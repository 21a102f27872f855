//go:build !race

package lambdatest

// RaceEnabled reports whether this binary was built with -race.
const RaceEnabled = false
