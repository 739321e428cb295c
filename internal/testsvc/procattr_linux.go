package testsvc

import "syscall"

// childAttr makes the kernel kill a child service when the test binary dies
// (a panic or a timeout kill skips t.Cleanup), so no redis-server outlives it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
