package sysmetrics

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/metrics"

	"github.com/shirou/gopsutil/v4/cpu"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/mem"
	"github.com/shirou/gopsutil/v4/process"
)

// reading is one raw probe of the host and the process. CPU figures are
// cumulative seconds; the sampler turns two readings into percentages.
type reading struct {
	cpuBusy, cpuTotal float64 // host, all cores, seconds since boot
	procCPU           float64 // this process, user+system seconds
	cpuOK, procOK     bool

	mem    Memory
	disk   Disk
	load   Load
	rss    uint64
	fds    int
	thread int

	goroutines int
	heapBytes  uint64
	gcCycles   uint64
}

// prober reads the figures with gopsutil (never hand-parsed /proc). It is
// used by the sampler goroutine only.
type prober struct {
	dir    string
	proc   *process.Process
	failed map[string]bool // probes that failed last time, so an outage is logged once
	rt     []metrics.Sample
}

func newProber(dir string) *prober {
	p := &prober{dir: dir, failed: map[string]bool{}, rt: []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/gc/cycles/total:gc-cycles"},
	}}
	p.proc, _ = process.NewProcess(int32(os.Getpid())) // an error resurfaces at each probe
	return p
}

// read probes everything; errs names the probes that failed (the figure
// stays zero).
func (p *prober) read(ctx context.Context) (r reading, errs map[string]error) {
	errs = map[string]error{}
	if ts, err := cpu.TimesWithContext(ctx, false); err != nil || len(ts) == 0 {
		errs["cpu"] = orErr(err, "no CPU times")
	} else {
		t := ts[0]
		// Guest time is already counted in user time on Linux.
		r.cpuBusy = t.User + t.System + t.Nice + t.Irq + t.Softirq + t.Steal
		r.cpuTotal = r.cpuBusy + t.Idle + t.Iowait
		r.cpuOK = true
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		errs["memory"] = err
	} else {
		used := vm.Total - vm.Available
		r.mem = Memory{TotalBytes: vm.Total, UsedBytes: used, AvailableBytes: vm.Available, UsedPercent: round3(pct(float64(used), float64(vm.Total)))}
	}
	if du, err := disk.UsageWithContext(ctx, p.dir); err != nil {
		errs["disk"] = err
	} else {
		r.disk = Disk{Path: du.Path, TotalBytes: du.Total, UsedBytes: du.Used, FreeBytes: du.Free, UsedPercent: round3(du.UsedPercent)}
	}
	if la, err := load.AvgWithContext(ctx); err != nil {
		errs["load"] = err
	} else {
		r.load = Load{Load1: la.Load1, Load5: la.Load5, Load15: la.Load15}
	}
	if p.proc == nil {
		errs["process"] = orErr(nil, "process handle unavailable")
	} else {
		if t, err := p.proc.TimesWithContext(ctx); err != nil {
			errs["process"] = err
		} else {
			r.procCPU, r.procOK = t.User+t.System, true
		}
		if mi, err := p.proc.MemoryInfoWithContext(ctx); err == nil {
			r.rss = mi.RSS
		}
		if n, err := p.proc.NumFDsWithContext(ctx); err == nil {
			r.fds = int(n)
		}
		if n, err := p.proc.NumThreadsWithContext(ctx); err == nil {
			r.thread = int(n)
		}
	}
	r.goroutines = runtime.NumGoroutine()
	metrics.Read(p.rt)
	if v := p.rt[0].Value; v.Kind() == metrics.KindUint64 {
		r.heapBytes = v.Uint64()
	}
	if v := p.rt[1].Value; v.Kind() == metrics.KindUint64 {
		r.gcCycles = v.Uint64()
	}
	return r, errs
}

type probeError string

func (e probeError) Error() string { return string(e) }

func orErr(err error, msg string) error {
	if err != nil {
		return err
	}
	return probeError(msg)
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func pct(part, whole float64) float64 {
	if whole <= 0 {
		return 0
	}
	return part / whole * 100
}
