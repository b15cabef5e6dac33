package bench

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"
)

// link stands for the long network path of a setup (client to API
// server for "direct"; kas to agentk for the tunnels): an in-process TCP
// relay whose two directions each deliver data rtt/2 after it was sent,
// like a network with that round-trip time. Each direction holds at most
// window bytes that the far end has not yet "acknowledged" (an
// acknowledgement arrives rtt/2 after delivery), so a single TCP
// connection through it is limited to window/rtt as on a real path with
// that maximum TCP window. Every path of a benchmark goes through one
// link, so the relay's own copy costs all of them alike.
type link struct {
	ln     net.Listener
	target string
	rtt    atomic.Int64 // nanoseconds
	window int64

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// linkWindow is each link direction's window: 6 MiB, the largest receive
// window Linux grows a TCP connection to by default (net.ipv4.tcp_rmem
// since kernel 4.20), so a path through a link gets what one default TCP
// connection would at that RTT. A fixed value rather than this machine's
// setting keeps results comparable between machines.
const linkWindow = 6 << 20

func newLink(target string) (*link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &link{ln: ln, target: target, window: linkWindow, conns: map[net.Conn]struct{}{}}
	l.wg.Go(l.accept)
	return l, nil
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) setRTT(d time.Duration) { l.rtt.Store(int64(d)) }

func (l *link) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *link) accept() {
	for {
		in, err := l.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", l.target)
		if err != nil {
			in.Close()
			continue
		}
		if !l.track(in) || !l.track(out) {
			in.Close()
			out.Close()
			return
		}
		var done sync.WaitGroup
		done.Add(2)
		closeBoth := func() {
			done.Wait()
			in.Close()
			out.Close()
			l.mu.Lock()
			delete(l.conns, in)
			delete(l.conns, out)
			l.mu.Unlock()
		}
		l.wg.Go(func() { defer done.Done(); l.pump(in, out) })
		l.wg.Go(func() { defer done.Done(); l.pump(out, in) })
		l.wg.Go(closeBoth)
	}
}

// segment is data read from one side, due at the other at due.
type segment struct {
	buf *[]byte
	n   int
	due time.Time
}

var segmentPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// pump carries src to dst with the link's delay and window.
func (l *link) pump(src, dst net.Conn) {
	window := semaphore.NewWeighted(l.window)
	queue := make(chan segment, 1024)
	writerDone := make(chan struct{})
	var pending sync.WaitGroup // acknowledgements not yet returned
	go func() {
		defer close(writerDone)
		failed := false
		for s := range queue {
			if !failed {
				if d := time.Until(s.due); d > 0 {
					time.Sleep(d)
				}
				if _, err := dst.Write((*s.buf)[:s.n]); err != nil {
					failed = true
					src.Close() // stop the reader too
				}
			}
			segmentPool.Put(s.buf)
			n := int64(s.n)
			if half := time.Duration(l.rtt.Load() / 2); half > 0 && !failed {
				pending.Add(1)
				time.AfterFunc(half, func() { window.Release(n); pending.Done() })
			} else {
				window.Release(n)
			}
		}
		if !failed {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
		}
	}()
	ctx := context.Background()
	for {
		buf := segmentPool.Get().(*[]byte)
		if err := window.Acquire(ctx, int64(len(*buf))); err != nil {
			segmentPool.Put(buf)
			break
		}
		n, err := src.Read(*buf)
		window.Release(int64(len(*buf) - n))
		if n > 0 {
			queue <- segment{buf: buf, n: n, due: time.Now().Add(time.Duration(l.rtt.Load() / 2))}
		} else {
			segmentPool.Put(buf)
		}
		if err != nil {
			break
		}
	}
	close(queue)
	<-writerDone
	pending.Wait()
}

func (l *link) close() error {
	err := l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
	l.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}
