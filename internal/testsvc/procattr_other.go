//go:build !linux

package testsvc

import "syscall"

// childAttr: only Linux has Pdeathsig; elsewhere t.Cleanup is the only stop.
func childAttr() *syscall.SysProcAttr { return nil }
