package mux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config tunes a session; the zero value (or nil) uses the defaults.
type Config struct {
	// AcceptBacklog is how many streams the peer may open that are not
	// accepted yet (more are refused with a reset), and how many streams
	// this side may have opened that the peer has not acknowledged yet
	// (OpenStream waits beyond that).
	AcceptBacklog int
	// KeepAliveInterval, when positive, pings the peer on that period;
	// a ping not answered within WriteTimeout ends the session.
	KeepAliveInterval time.Duration
	// WriteTimeout ends the session when a write to the connection
	// cannot proceed for between half of it and all of it (the deadline
	// is renewed lazily, not per frame). Default 10 s.
	WriteTimeout time.Duration
	// MaxStreamWindow is each stream's receive window (at least 256 KiB,
	// the protocol's initial window; that is the default too).
	MaxStreamWindow uint32
	// StreamCloseTimeout is how long a stream closed here waits for the
	// peer's close before it is reset. Default 5 minutes; negative:
	// never.
	StreamCloseTimeout time.Duration
	// StreamOpenTimeout ends the session when a stream opened here is
	// not acknowledged for that long: the peer answers pings but no
	// longer accepts streams (hashicorp/yamux's default: 75 s, which is
	// the default here too; negative: never). It is checked at each
	// keepalive, so only with KeepAliveInterval set, and only to within
	// one KeepAliveInterval.
	StreamOpenTimeout time.Duration
	// Logger gets protocol errors and keepalive failures; nil discards.
	Logger *slog.Logger
}

const (
	defaultAcceptBacklog      = 256
	defaultWriteTimeout       = 10 * time.Second
	defaultStreamCloseTimeout = 5 * time.Minute
	defaultStreamOpenTimeout  = 75 * time.Second
)

func (c *Config) withDefaults() Config {
	var o Config
	if c != nil {
		o = *c
	}
	if o.AcceptBacklog <= 0 {
		o.AcceptBacklog = defaultAcceptBacklog
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.MaxStreamWindow < initialWindow {
		o.MaxStreamWindow = initialWindow
	}
	if o.StreamCloseTimeout == 0 {
		o.StreamCloseTimeout = defaultStreamCloseTimeout
	}
	if o.StreamOpenTimeout == 0 {
		o.StreamOpenTimeout = defaultStreamOpenTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Session multiplexes streams over one connection, speaking yamux's wire
// format, so either end may be hashicorp/yamux. Unlike hashicorp/yamux, a
// stream's frames are written by the goroutine that sends them, under
// the session's write lock, not handed to a send goroutine and waited
// for: each hand-off costs a thread wake-up on an otherwise idle core,
// twice per request (docs/benchmarks.md). The receive loop never
// writes; the few frames it answers with (pings, resets) go through a
// small queue, so it always drains the connection and a write here can
// only wait for the peer's process, not for this one.
type Session struct {
	cfg    Config
	conn   io.ReadWriteCloser
	client bool
	br     *bufio.Reader

	writeMu  sync.Mutex
	hdr      header // the header being written, under writeMu
	deadline interface{ SetWriteDeadline(time.Time) error }
	writeDL  time.Time   // the write deadline in force, under writeMu
	frames   FrameWriter // conn, when it writes a frame whole

	mu      sync.Mutex
	streams map[uint32]*Stream
	nextID  uint32
	pings   map[uint32]chan struct{}
	pingID  uint32

	acceptCh chan *Stream
	synSem   chan struct{} // a slot per stream opened here and not yet acknowledged
	ctrlCh   chan header   // frames the receive loop answers with

	localGoAway  atomic.Bool
	remoteGoAway atomic.Bool

	closed     atomic.Bool
	closeOnce  sync.Once
	shutdownCh chan struct{}
	errMu      sync.Mutex
	err        error
	recvDone   chan struct{}
	loops      sync.WaitGroup
}

// Client runs the dialing side of a session on conn (odd stream IDs).
func Client(conn io.ReadWriteCloser, cfg *Config) (*Session, error) {
	return newSession(conn, cfg, true), nil
}

// Server runs the accepting side of a session on conn (even stream IDs).
func Server(conn io.ReadWriteCloser, cfg *Config) (*Session, error) {
	return newSession(conn, cfg, false), nil
}

func newSession(conn io.ReadWriteCloser, cfg *Config, client bool) *Session {
	c := cfg.withDefaults()
	s := &Session{
		cfg:        c,
		conn:       conn,
		client:     client,
		br:         bufio.NewReaderSize(conn, 4096),
		streams:    map[uint32]*Stream{},
		pings:      map[uint32]chan struct{}{},
		acceptCh:   make(chan *Stream, c.AcceptBacklog),
		synSem:     make(chan struct{}, c.AcceptBacklog),
		ctrlCh:     make(chan header, 64),
		shutdownCh: make(chan struct{}),
		recvDone:   make(chan struct{}),
	}
	s.deadline, _ = conn.(interface{ SetWriteDeadline(time.Time) error })
	s.frames, _ = conn.(FrameWriter)
	if client {
		s.nextID = 1
	} else {
		s.nextID = 2
	}
	go s.recvLoop()
	s.loops.Add(1)
	go s.ctrlLoop()
	if c.KeepAliveInterval > 0 {
		s.loops.Add(1)
		go s.keepalive()
	}
	return s
}

// IsClosed reports whether the session has ended.
func (s *Session) IsClosed() bool { return s.closed.Load() }

// CloseChan is closed when the session ends.
func (s *Session) CloseChan() <-chan struct{} { return s.shutdownCh }

// NumStreams is the number of streams open (not fully closed or reset).
func (s *Session) NumStreams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Open is OpenStream as a net.Conn.
func (s *Session) Open() (net.Conn, error) {
	st, err := s.OpenStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// OpenStream opens a stream. It waits while AcceptBacklog streams opened
// here are not yet acknowledged by the peer.
func (s *Session) OpenStream() (*Stream, error) {
	return s.OpenStreamContext(context.Background())
}

// OpenStreamContext is OpenStream that stops waiting for an open slot
// when ctx is done: a peer that stops accepting streams while it still
// answers pings would otherwise hold the caller until the session ends.
func (s *Session) OpenStreamContext(ctx context.Context) (*Stream, error) {
	if s.IsClosed() {
		return nil, ErrSessionShutdown
	}
	if s.remoteGoAway.Load() {
		return nil, ErrRemoteGoAway
	}
	select {
	case s.synSem <- struct{}{}:
	case <-s.shutdownCh:
		return nil, ErrSessionShutdown
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s.mu.Lock()
	id := s.nextID
	if id >= 1<<32-2 {
		s.mu.Unlock()
		<-s.synSem
		return nil, ErrStreamsExhausted
	}
	s.nextID += 2
	st := newStream(s, id)
	st.awaitingACK = true
	st.opened = time.Now()
	st.recvWindow = s.cfg.MaxStreamWindow
	s.streams[id] = st
	s.mu.Unlock()
	if err := s.writeFrame(typeWindowUpdate, flagSYN, id, s.cfg.MaxStreamWindow-initialWindow, nil); err != nil {
		st.forceClose()
		s.removeStream(st)
		return nil, err
	}
	return st, nil
}

// Accept is AcceptStream as a net.Conn.
func (s *Session) Accept() (net.Conn, error) {
	st, err := s.AcceptStream()
	if err != nil {
		return nil, err
	}
	return st, nil
}

// AcceptStream waits for the peer to open a stream, and acknowledges it.
func (s *Session) AcceptStream() (*Stream, error) {
	select {
	case st := <-s.acceptCh:
		st.mu.Lock()
		st.recvWindow += s.cfg.MaxStreamWindow - initialWindow
		st.mu.Unlock()
		if err := s.writeFrame(typeWindowUpdate, flagACK, st.id, s.cfg.MaxStreamWindow-initialWindow, nil); err != nil {
			return nil, err
		}
		return st, nil
	case <-s.shutdownCh:
		return nil, ErrSessionShutdown
	}
}

// GoAway tells the peer that this side accepts no more streams; streams
// it opens from now on are reset. Streams already open carry on.
func (s *Session) GoAway() error {
	s.localGoAway.Store(true)
	return s.writeFrame(typeGoAway, 0, 0, goAwayNormal, nil)
}

// Ping sends a ping and waits for the answer, for at most WriteTimeout.
func (s *Session) Ping() (time.Duration, error) {
	s.mu.Lock()
	s.pingID++
	id := s.pingID
	ch := make(chan struct{})
	s.pings[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pings, id)
		s.mu.Unlock()
	}()
	start := time.Now()
	if err := s.writeFrame(typePing, flagSYN, 0, id, nil); err != nil {
		return 0, err
	}
	t := time.NewTimer(s.cfg.WriteTimeout)
	defer t.Stop()
	select {
	case <-ch:
		return time.Since(start), nil
	case <-t.C:
		return 0, ErrKeepAliveTimeout
	case <-s.shutdownCh:
		return 0, ErrSessionShutdown
	}
}

// Close ends the session: the connection is closed and every stream
// ends (reads return io.EOF once drained, writes fail). It waits for
// the session's goroutines.
func (s *Session) Close() error {
	s.shutdown(nil)
	<-s.recvDone
	s.loops.Wait()
	return nil
}

// shutdown ends the session without waiting (the loops call it).
func (s *Session) shutdown(err error) {
	s.closeOnce.Do(func() {
		s.errMu.Lock()
		if err == nil {
			err = ErrSessionShutdown
		}
		s.err = err
		s.errMu.Unlock()
		s.closed.Store(true)
		close(s.shutdownCh)
		s.conn.Close()
		s.mu.Lock()
		streams := s.streams
		s.streams = map[uint32]*Stream{}
		s.mu.Unlock()
		for _, st := range streams {
			st.forceClose()
		}
	})
}

// writeFrame writes one frame: header and body in one WriteFrame on a
// FrameWriter, else the header, then the body in a second write.
func (s *Session) writeFrame(typ uint8, flags uint16, id, length uint32, body []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if s.IsClosed() {
		return ErrSessionShutdown
	}
	if s.deadline != nil {
		// Renewed lazily: a deadline per frame would re-arm a timer
		// for every write.
		if now := time.Now(); s.writeDL.Sub(now) < s.cfg.WriteTimeout/2 {
			s.writeDL = now.Add(s.cfg.WriteTimeout)
			_ = s.deadline.SetWriteDeadline(s.writeDL)
		}
	}
	s.hdr.encode(typ, flags, id, length)
	var err error
	switch {
	case len(body) > 0 && s.frames != nil:
		err = s.frames.WriteFrame(s.hdr[:], body)
	case len(body) > 0:
		if _, err = s.conn.Write(s.hdr[:]); err == nil {
			_, err = s.conn.Write(body)
		}
	default:
		_, err = s.conn.Write(s.hdr[:])
	}
	if err != nil {
		s.shutdown(fmt.Errorf("mux: write: %w", err))
		return ErrSessionShutdown
	}
	return nil
}

// FrameWriter is a connection that sends a frame's header and body
// together: as one WebSocket message, one writev, one TLS record. A
// Session on one writes each frame that has a body with one WriteFrame
// (frames without a body, with one Write); on another connection it
// writes the header and the body with a Write each, as hashicorp/yamux
// does. Either way the bytes on the wire are the same.
type FrameWriter interface {
	WriteFrame(hdr, body []byte) error
}

// queue hands a frame to ctrlLoop, for the receive loop, which must not
// block on the connection.
func (s *Session) queue(typ uint8, flags uint16, id, length uint32) {
	var h header
	h.encode(typ, flags, id, length)
	select {
	case s.ctrlCh <- h:
	case <-s.shutdownCh:
	}
}

func (s *Session) ctrlLoop() {
	defer s.loops.Done()
	for {
		select {
		case h := <-s.ctrlCh:
			if s.writeFrame(h.typ(), h.flags(), h.stream(), h.length(), nil) != nil {
				return
			}
		case <-s.shutdownCh:
			return
		}
	}
}

func (s *Session) keepalive() {
	defer s.loops.Done()
	t := time.NewTicker(s.cfg.KeepAliveInterval)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			if s.openTimedOut(now) {
				s.cfg.Logger.Warn("Tunnel peer has not accepted a stream opened long ago: closing the session", "timeout", s.cfg.StreamOpenTimeout)
				s.shutdown(ErrStreamOpenTimeout)
				return
			}
			if _, err := s.Ping(); err != nil {
				if errors.Is(err, ErrKeepAliveTimeout) {
					s.cfg.Logger.Warn("Tunnel peer did not answer a keepalive ping: closing the session", "timeout", s.cfg.WriteTimeout)
					s.shutdown(ErrKeepAliveTimeout)
				}
				return
			}
		case <-s.shutdownCh:
			return
		}
	}
}

// openTimedOut reports whether a stream opened here has waited for the
// peer's acknowledgement for StreamOpenTimeout by now.
func (s *Session) openTimedOut(now time.Time) bool {
	if s.cfg.StreamOpenTimeout < 0 {
		return false
	}
	s.mu.Lock()
	streams := make([]*Stream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	for _, st := range streams {
		st.mu.Lock()
		late := st.awaitingACK && now.Sub(st.opened) >= s.cfg.StreamOpenTimeout
		st.mu.Unlock()
		if late {
			return true
		}
	}
	return false
}

func (s *Session) recvLoop() {
	defer close(s.recvDone)
	err := s.recv()
	var pe *errProtocol
	if errors.As(err, &pe) {
		s.cfg.Logger.Warn("Tunnel peer broke the framing protocol: closing the session", "err", err)
	}
	s.shutdown(err)
}

func (s *Session) recv() error {
	var h header
	for {
		if _, err := io.ReadFull(s.br, h[:]); err != nil {
			return err
		}
		if h.version() != protoVersion {
			return &errProtocol{fmt.Sprintf("version %d", h.version())}
		}
		var err error
		switch h.typ() {
		case typeData, typeWindowUpdate:
			err = s.handleStream(&h)
		case typePing:
			s.handlePing(&h)
		case typeGoAway:
			err = s.handleGoAway(&h)
		default:
			err = &errProtocol{fmt.Sprintf("frame type %d", h.typ())}
		}
		if err != nil {
			return err
		}
	}
}

func (s *Session) handlePing(h *header) {
	if h.flags()&flagSYN != 0 {
		s.queue(typePing, flagACK, 0, h.length())
		return
	}
	s.mu.Lock()
	ch := s.pings[h.length()]
	delete(s.pings, h.length())
	s.mu.Unlock()
	if ch != nil {
		close(ch)
	}
}

func (s *Session) handleGoAway(h *header) error {
	switch code := h.length(); code {
	case goAwayNormal:
		s.remoteGoAway.Store(true)
		return nil
	default:
		s.cfg.Logger.Warn("Tunnel peer ended the session with an error code", "code", code)
		return ErrRemoteGoAway
	}
}

func (s *Session) handleStream(h *header) error {
	id, flags := h.stream(), h.flags()
	if flags&flagSYN != 0 {
		if err := s.incoming(id); err != nil {
			return err
		}
	}
	s.mu.Lock()
	st := s.streams[id]
	s.mu.Unlock()
	if h.typ() == typeWindowUpdate {
		if st != nil {
			st.windowUpdate(flags, h.length())
		}
		return nil
	}
	n := h.length()
	if st == nil {
		// A stream closed or reset here: its data in flight is dropped.
		_, err := s.br.Discard(int(n))
		return err
	}
	if n > s.cfg.MaxStreamWindow {
		return &errProtocol{fmt.Sprintf("stream %d: a data frame of %d bytes, over the window of %d", id, n, s.cfg.MaxStreamWindow)}
	}
	var p []byte
	if n > 0 {
		p = getFrameBuf(int(n))
		if _, err := io.ReadFull(s.br, p); err != nil {
			return err
		}
	}
	return st.data(flags, p)
}

// incoming registers a stream the peer opens.
func (s *Session) incoming(id uint32) error {
	if id == 0 || (id%2 == 1) == s.client {
		return &errProtocol{fmt.Sprintf("stream %d opened by the peer has this side's parity", id)}
	}
	if s.localGoAway.Load() {
		s.queue(typeWindowUpdate, flagRST, id, 0)
		return nil
	}
	st := newStream(s, id)
	s.mu.Lock()
	if _, dup := s.streams[id]; dup {
		s.mu.Unlock()
		return &errProtocol{fmt.Sprintf("stream %d opened twice", id)}
	}
	s.streams[id] = st
	s.mu.Unlock()
	select {
	case s.acceptCh <- st:
	default:
		s.cfg.Logger.Warn("Tunnel peer opened more streams than the accept backlog: resetting one", "backlog", s.cfg.AcceptBacklog)
		s.removeStream(st)
		s.queue(typeWindowUpdate, flagRST, id, 0)
	}
	return nil
}

// removeStream forgets a stream that has ended, and frees its open slot.
func (s *Session) removeStream(st *Stream) {
	s.mu.Lock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
	}
	s.mu.Unlock()
	st.releaseSYN()
}

// Addr is LocalAddr: with Accept and Close, a Session is a net.Listener
// of the streams the peer opens.
func (s *Session) Addr() net.Addr { return s.LocalAddr() }

// LocalAddr is the connection's, when it has one.
func (s *Session) LocalAddr() net.Addr {
	if c, ok := s.conn.(interface{ LocalAddr() net.Addr }); ok {
		return c.LocalAddr()
	}
	return muxAddr{}
}

// RemoteAddr is the connection's, when it has one.
func (s *Session) RemoteAddr() net.Addr {
	if c, ok := s.conn.(interface{ RemoteAddr() net.Addr }); ok {
		return c.RemoteAddr()
	}
	return muxAddr{}
}

type muxAddr struct{}

func (muxAddr) Network() string { return "mux" }
func (muxAddr) String() string  { return "mux" }
