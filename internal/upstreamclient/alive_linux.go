package upstreamclient

import (
	"net"
	"syscall"
	"unsafe"
)

// alive reports whether an idle connection may carry a request: the backend
// has not closed it (nor reset it) and sent nothing unasked. One non-blocking
// peek; http.Transport learns the same from its per-connection read
// goroutine.
func alive(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ok = false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		// Nothing to read and no error: the connection is open and quiet.
		ok = int(n) == -1 && (errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && ok
}
