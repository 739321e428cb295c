package framing

import (
	"io"
	"net"
	"strings"
	"testing"
)

// readAll feeds chunks through a Conn as separate reads.
func readAll(t *testing.T, chunks []string, serving []bool) *Conn {
	t.Helper()
	client, server := net.Pipe()
	c := &Conn{Conn: server}
	go func() {
		for _, ch := range chunks {
			io.WriteString(client, ch)
		}
		client.Close()
	}()
	buf := make([]byte, 4096)
	for i := range chunks {
		if serving != nil {
			c.Serving(serving[i])
		}
		if _, err := io.ReadFull(c, buf[:len(chunks[i])]); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func TestTransferEncodingLine(t *testing.T) {
	tests := []struct {
		name    string
		chunks  []string
		serving []bool
		want    bool
	}{
		{name: "a chunked HTTP/1.0 request", chunks: []string{"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}, want: true},
		{name: "any case", chunks: []string{"GET / HTTP/1.0\r\ntRANSFER-eNCODING: chunked\r\n\r\n"}, want: true},
		{name: "split across reads", chunks: []string{"GET / HTTP/1.0\r\nHost: x\r\nTransfer-En", "coding: chunked\r\n\r\n"}, want: true},
		{name: "split right after the line break", chunks: []string{"GET / HTTP/1.0\r\n", "Transfer-Encoding: chunked\r\n\r\n"}, want: true},
		{name: "split one byte at a time", chunks: strings.Split("GET / HTTP/1.0\r\nTransfer-Encoding: x\r\n\r\n", ""), want: true},
		{name: "no such line", chunks: []string{"GET / HTTP/1.0\r\nHost: x\r\nX-Transfer-Encoding: chunked\r\nAccept-Encoding: gzip\r\n\r\n"}},
		{name: "a near miss split across reads", chunks: []string{"GET / HTTP/1.0\r\nTransfer-Enc", "Xding: chunked\r\n\r\n"}},
		{name: "a value, not a name", chunks: []string{"GET / HTTP/1.0\r\nX-Note: see\r\n transfer-encoding\r\n\r\n"}},
		{name: "bodies read while a handler runs are not scanned", chunks: []string{"POST / HTTP/1.1\r\nContent-Length: 21\r\n\r\n", "\r\nTransfer-Encoding: x"}, serving: []bool{false, true}},
		{name: "heads after a handler are scanned again", chunks: []string{"GET / HTTP/1.1\r\n\r\n", "x", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"}, serving: []bool{false, true, false}, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := readAll(t, tc.chunks, tc.serving).SawTransferEncoding(); got != tc.want {
				t.Errorf("SawTransferEncoding = %v, want %v", got, tc.want)
			}
		})
	}
}

func BenchmarkScanRequestHead(b *testing.B) {
	head := []byte("GET /api/users/42?expand=orders HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
		"Accept: application/json\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: en-GB,en;q=0.9\r\n" +
		"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\nConnection: keep-alive\r\n\r\n")
	c := &Conn{}
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		c.scan(head)
	}
}
