//go:build !linux

package main

import "errors"

// setOpenFileLimit is Linux's only: the tests that use it run there.
func setOpenFileLimit(string) error { return errors.New("not on this system") }
