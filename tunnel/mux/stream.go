package mux

import (
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"time"
)

// Stream is one logical connection in a session: a net.Conn whose Close
// is a half-close (the peer reads io.EOF; this side may still read).
type Stream struct {
	s  *Session
	id uint32

	mu         sync.Mutex
	chunks     [][]byte // received and not read yet, a frame's payload each
	off        int      // read offset into chunks[0]
	buffered   uint32   // bytes in chunks
	recvWindow uint32   // how much more the peer may send
	sendWindow uint32   // how much more this side may send
	// awaitingACK: opened here and not acknowledged yet; the stream holds
	// one of the session's open slots until the ACK (or its end).
	awaitingACK  bool
	opened       time.Time // when this side opened it (for StreamOpenTimeout)
	localClosed  bool
	remoteClosed bool
	reset        bool
	sessClosed   bool
	closeTimer   *time.Timer
	onPeerClose  []*peerCloseFunc
	readDL       time.Time
	writeDL      time.Time

	recvNotify chan struct{}
	sendNotify chan struct{}
}

func newStream(s *Session, id uint32) *Stream {
	return &Stream{
		s:          s,
		id:         id,
		recvWindow: initialWindow,
		sendWindow: initialWindow,
		recvNotify: make(chan struct{}, 1),
		sendNotify: make(chan struct{}, 1),
	}
}

type peerCloseFunc struct{ f func() }

// AfterPeerClose arranges for f to run once the peer closes or resets the
// stream, or the session ends (at once, on a goroutine of its own, if that
// has happened). f runs on the session's receive loop: it must not block.
// stop deregisters f, and reports whether that stopped it from running.
//
// It lets a server cancel a request when its caller goes away without a
// goroutine or a timer per request (tunnel/wire's Serve).
func (st *Stream) AfterPeerClose(f func()) (stop func() bool) {
	e := &peerCloseFunc{f: f}
	st.mu.Lock()
	if st.remoteClosed || st.reset || st.sessionGone() {
		st.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	st.onPeerClose = append(st.onPeerClose, e)
	st.mu.Unlock()
	return func() bool {
		st.mu.Lock()
		defer st.mu.Unlock()
		for i, x := range st.onPeerClose {
			if x == e {
				st.onPeerClose = slices.Delete(st.onPeerClose, i, i+1)
				return true
			}
		}
		return false
	}
}

// peerClosedLocked takes the AfterPeerClose functions to run, once the
// stream can receive nothing more; under mu.
func (st *Stream) peerClosedLocked() []*peerCloseFunc {
	if !(st.remoteClosed || st.reset || st.sessClosed) {
		return nil
	}
	fns := st.onPeerClose
	st.onPeerClose = nil
	return fns
}

func runPeerClose(fns []*peerCloseFunc) {
	for _, e := range fns {
		e.f()
	}
}

// StreamID is the stream's number in its session.
func (st *Stream) StreamID() uint32 { return st.id }

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// sessionGone reports whether the session has ended; under mu.
func (st *Stream) sessionGone() bool { return st.sessClosed || st.s.closed.Load() }

// Read reads what the peer sent; io.EOF after its close. An empty p
// reports the stream's state as a Read would (EOF, reset, deadline),
// which is how a pool checks an idle stream.
func (st *Stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for {
		if st.buffered > 0 {
			n := 0
			for n < len(p) && len(st.chunks) > 0 {
				c := copy(p[n:], st.chunks[0][st.off:])
				n += c
				st.off += c
				if st.off == len(st.chunks[0]) {
					putFrameBuf(st.chunks[0])
					st.chunks[0] = nil
					st.chunks = st.chunks[1:]
					st.off = 0
				}
			}
			if len(st.chunks) == 0 {
				st.chunks = nil // do not keep a grown slice for an idle stream
			}
			st.buffered -= uint32(n)
			delta := st.grant()
			if st.buffered > 0 {
				notify(st.recvNotify)
			}
			st.mu.Unlock()
			if delta > 0 {
				_ = st.s.writeFrame(typeWindowUpdate, 0, st.id, delta, nil)
			}
			return n, nil
		}
		switch {
		case st.reset:
			st.mu.Unlock()
			return 0, ErrConnectionReset
		case st.remoteClosed || st.sessionGone():
			st.mu.Unlock()
			return 0, io.EOF
		}
		dl := st.readDL
		if !dl.IsZero() && !time.Now().Before(dl) {
			st.mu.Unlock()
			return 0, ErrTimeout
		}
		st.mu.Unlock()
		st.wait(st.recvNotify, dl)
		st.mu.Lock()
	}
}

// grant returns the window to give back to the peer after a read, if
// it is worth a frame (half the window or more); under mu.
func (st *Stream) grant() uint32 {
	if st.remoteClosed || st.reset || st.sessionGone() {
		return 0
	}
	max := st.s.cfg.MaxStreamWindow
	if st.buffered+st.recvWindow >= max {
		return 0
	}
	delta := max - st.buffered - st.recvWindow
	if delta < max/2 {
		return 0
	}
	st.recvWindow += delta
	return delta
}

// Write sends p, as much at a time as the peer's window allows, each
// frame written by this goroutine.
func (st *Stream) Write(p []byte) (int, error) {
	total := 0
	for total < len(p) {
		st.mu.Lock()
		switch {
		case st.reset:
			st.mu.Unlock()
			return total, ErrConnectionReset
		case st.localClosed:
			st.mu.Unlock()
			return total, ErrStreamClosed
		case st.sessionGone():
			st.mu.Unlock()
			return total, ErrSessionShutdown
		}
		if st.sendWindow == 0 {
			dl := st.writeDL
			if !dl.IsZero() && !time.Now().Before(dl) {
				st.mu.Unlock()
				return total, ErrTimeout
			}
			st.mu.Unlock()
			st.wait(st.sendNotify, dl)
			continue
		}
		n := uint32(min(len(p)-total, int(st.sendWindow)))
		st.sendWindow -= n
		if st.sendWindow > 0 {
			notify(st.sendNotify) // another writer may go on too
		}
		st.mu.Unlock()
		if err := st.s.writeFrame(typeData, 0, st.id, n, p[total:total+int(n)]); err != nil {
			return total, err
		}
		total += int(n)
	}
	return total, nil
}

func (st *Stream) wait(ch chan struct{}, dl time.Time) {
	if dl.IsZero() {
		select {
		case <-ch:
		case <-st.s.shutdownCh:
		}
		return
	}
	t := time.NewTimer(time.Until(dl))
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-st.s.shutdownCh:
	}
}

// Close half-closes the stream: the peer reads io.EOF after what was
// written. The stream ends when the peer closes too, or after the
// session's StreamCloseTimeout, when it is reset.
func (st *Stream) Close() error {
	st.mu.Lock()
	if st.localClosed || st.reset || st.sessionGone() {
		st.mu.Unlock()
		return nil
	}
	st.localClosed = true
	done := st.remoteClosed
	if !done && st.s.cfg.StreamCloseTimeout > 0 {
		st.closeTimer = time.AfterFunc(st.s.cfg.StreamCloseTimeout, st.closeTimedOut)
	}
	st.mu.Unlock()
	notify(st.sendNotify)
	err := st.s.writeFrame(typeWindowUpdate, flagFIN, st.id, 0, nil)
	if done {
		st.s.removeStream(st)
	}
	return err
}

// closeTimedOut resets a stream closed here that the peer never closed.
func (st *Stream) closeTimedOut() {
	st.mu.Lock()
	if st.reset || st.remoteClosed || st.sessionGone() {
		st.mu.Unlock()
		return
	}
	st.reset = true
	st.chunks, st.off, st.buffered = nil, 0, 0
	fns := st.peerClosedLocked()
	st.mu.Unlock()
	runPeerClose(fns)
	notify(st.recvNotify)
	notify(st.sendNotify)
	st.s.removeStream(st)
	_ = st.s.writeFrame(typeWindowUpdate, flagRST, st.id, 0, nil)
}

// data takes a data frame's payload (a getFrameBuf buffer) and flags,
// from the receive loop. A small payload is copied into the last chunk
// when that has room, and its buffer goes back; otherwise the buffer is
// kept as a chunk (a small payload's has room for the next ones).
func (st *Stream) data(flags uint16, p []byte) error {
	st.mu.Lock()
	n := uint32(len(p))
	if n > st.recvWindow {
		st.mu.Unlock()
		return &errProtocol{fmt.Sprintf("stream %d: %d bytes over a window of %d", st.id, n, st.recvWindow)}
	}
	st.recvWindow -= n
	switch last := len(st.chunks) - 1; {
	case n == 0:
	case st.reset || st.sessClosed:
		putFrameBuf(p)
	case n < smallFrame && last >= 0 && cap(st.chunks[last])-len(st.chunks[last]) >= len(p):
		st.chunks[last] = append(st.chunks[last], p...)
		st.buffered += n
		putFrameBuf(p)
	default:
		st.chunks = append(st.chunks, p)
		st.buffered += n
	}
	st.flagsAndUnlock(flags)
	notify(st.recvNotify)
	return nil
}

// windowUpdate takes a window update frame's delta and flags.
func (st *Stream) windowUpdate(flags uint16, delta uint32) {
	st.mu.Lock()
	st.sendWindow += delta
	st.flagsAndUnlock(flags)
	notify(st.sendNotify)
	if flags&(flagFIN|flagRST) != 0 {
		notify(st.recvNotify)
	}
}

// flagsAndUnlock applies a frame's flags, unlocks mu (held by the
// caller), and then does what they call for outside the lock.
func (st *Stream) flagsAndUnlock(flags uint16) {
	ack, remove := st.flagsLocked(flags)
	fns := st.peerClosedLocked()
	st.mu.Unlock()
	runPeerClose(fns)
	st.after(ack, remove)
}

// flagsLocked applies ACK, FIN and RST; under mu.
func (st *Stream) flagsLocked(flags uint16) (ack, remove bool) {
	if flags&flagACK != 0 && st.awaitingACK {
		st.awaitingACK = false
		ack = true
	}
	if flags&flagFIN != 0 && !st.remoteClosed {
		st.remoteClosed = true
		if st.localClosed {
			remove = true
		}
	}
	if flags&flagRST != 0 && !st.reset {
		st.reset = true
		remove = true
	}
	if remove && st.closeTimer != nil {
		st.closeTimer.Stop()
	}
	return ack, remove
}

func (st *Stream) after(ack, remove bool) {
	if ack {
		<-st.s.synSem
	}
	if remove {
		st.s.removeStream(st)
		notify(st.sendNotify)
	}
}

// releaseSYN frees the open slot of a stream that ends unacknowledged.
func (st *Stream) releaseSYN() {
	st.mu.Lock()
	held := st.awaitingACK
	st.awaitingACK = false
	st.mu.Unlock()
	if held {
		<-st.s.synSem
	}
}

// forceClose ends the stream with its session.
func (st *Stream) forceClose() {
	st.mu.Lock()
	st.sessClosed = true
	if st.closeTimer != nil {
		st.closeTimer.Stop()
	}
	fns := st.peerClosedLocked()
	st.mu.Unlock()
	runPeerClose(fns)
	notify(st.recvNotify)
	notify(st.sendNotify)
}

// SetDeadline sets both deadlines.
func (st *Stream) SetDeadline(t time.Time) error {
	_ = st.SetReadDeadline(t)
	return st.SetWriteDeadline(t)
}

// SetReadDeadline makes a Read waiting past t return ErrTimeout (a
// net.Error); a past t wakes a waiting Read at once.
func (st *Stream) SetReadDeadline(t time.Time) error {
	st.mu.Lock()
	st.readDL = t
	st.mu.Unlock()
	notify(st.recvNotify)
	return nil
}

// SetWriteDeadline makes a Write waiting for window past t return
// ErrTimeout.
func (st *Stream) SetWriteDeadline(t time.Time) error {
	st.mu.Lock()
	st.writeDL = t
	st.mu.Unlock()
	notify(st.sendNotify)
	return nil
}

// LocalAddr is the session's.
func (st *Stream) LocalAddr() net.Addr { return st.s.LocalAddr() }

// RemoteAddr is the session's.
func (st *Stream) RemoteAddr() net.Addr { return st.s.RemoteAddr() }
