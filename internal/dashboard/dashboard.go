// Package dashboard is the live TTY dashboard: a Bubble Tea program that
// redraws the gateway's overview (the same in-process counters /stats
// reads) about once a second, adapting to the terminal's size.
package dashboard

import (
	"context"
	"errors"
	"io"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/portcullis/portcullis/internal/overview"
)

// HistoryPoints is how many samples the rate sparkline may draw.
const HistoryPoints = 120

// Options configure the dashboard.
type Options struct {
	// Source returns the gateway's overview with up to n history points;
	// (*gateway.Gateway).Overview.
	Source func(n int) overview.Overview
	// Addr is the listening address shown in the header.
	Addr string
	// LogFile is where the logs go while the dashboard owns the terminal;
	// the footer says so.
	LogFile string
	// Interval between redraws; default one second.
	Interval time.Duration
	// Now is the clock the certificates' days left are counted by; nil
	// means time.Now.
	Now func() time.Time
	// Input and Output default to the process's stdin and stdout.
	Input  io.Reader
	Output io.Writer
}

// Outcome is how the dashboard ended.
type Outcome int

const (
	// Closed: the operator pressed q; the gateway keeps serving.
	Closed Outcome = iota
	// StopGateway: the operator pressed Ctrl-C; the gateway should shut down.
	StopGateway
	// Cancelled: the context ended (a signal already stops the gateway).
	Cancelled
)

type tickMsg struct{}

// Model is the Bubble Tea model.
type Model struct {
	opts          Options
	ov            overview.Overview
	width, height int
	outcome       Outcome
	stopping      bool
}

// NewModel returns the model, with a first overview already read so the
// first frame has figures.
func NewModel(o Options) Model {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	return Model{opts: o, ov: o.Source(HistoryPoints), width: 80, height: 24, outcome: Closed}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Interval, func(time.Time) tea.Msg { return tickMsg{} })
}

// Init starts the refresh ticker.
func (m Model) Init() tea.Cmd { return m.tick() }

// Update handles keys, resizes and ticks.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case tea.KeyPressMsg:
		switch msg.String() {
		case "q", "Q", "esc":
			m.outcome = Closed
			return m, tea.Quit
		case "ctrl+c":
			m.outcome, m.stopping = StopGateway, true
			return m, tea.Quit
		}
	case tea.InterruptMsg:
		m.outcome, m.stopping = StopGateway, true
		return m, tea.Quit
	case tickMsg:
		m.ov = m.opts.Source(HistoryPoints)
		return m, m.tick()
	}
	return m, nil
}

// View draws the screen in the alternate screen buffer, so the terminal's
// scrollback is left as it was when the dashboard closes.
func (m Model) View() tea.View {
	v := tea.NewView(render(m.ov, m.opts, m.width, m.height, m.stopping))
	v.AltScreen = true
	v.WindowTitle = "Portcullis gateway"
	return v
}

// Run shows the dashboard until q (Closed), Ctrl-C (StopGateway) or the end
// of ctx (Cancelled). The terminal is restored before it returns, whatever
// the outcome.
func Run(ctx context.Context, o Options) (Outcome, error) {
	opts := []tea.ProgramOption{tea.WithoutSignalHandler()}
	if o.Input != nil {
		opts = append(opts, tea.WithInput(o.Input))
	}
	if o.Output != nil {
		opts = append(opts, tea.WithOutput(o.Output))
	}
	p := tea.NewProgram(NewModel(o), opts...)
	stop := context.AfterFunc(ctx, p.Quit)
	defer stop()
	final, err := p.Run()
	if ctx.Err() != nil {
		return Cancelled, nil
	}
	if err != nil && !errors.Is(err, tea.ErrProgramKilled) {
		return Closed, err
	}
	if fm, ok := final.(Model); ok {
		return fm.outcome, nil
	}
	return Closed, err
}
