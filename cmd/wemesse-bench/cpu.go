package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/wemesse/server/internal/proctest"
)

// cpuMark is the CPU time used up to one moment: by the machine's cores,
// by this process with its waited-for children (the load generator: wrk,
// or vegeta in this process) and by the side under test. The difference of
// two marks is what a run cost, which says whether a side was slower for
// the work it did or for cores left idle.
type cpuMark struct {
	busy, idle time.Duration // all cores, from /proc/stat
	bench      time.Duration
	side       time.Duration
}

// markCPU reads the counters now; side (nil: none) reads the CPU time of
// the side under test.
func markCPU(side func() (time.Duration, error)) (cpuMark, error) {
	var m cpuMark
	var err error
	if m.busy, m.idle, err = machineCPU(); err != nil {
		return m, err
	}
	m.bench = rusage(syscall.RUSAGE_SELF) + rusage(syscall.RUSAGE_CHILDREN)
	if side != nil {
		m.side, err = side()
	}
	return m, err
}

// since is what was used between then and m.
func (m cpuMark) since(then cpuMark) cpuMark {
	return cpuMark{busy: m.busy - then.busy, idle: m.idle - then.idle, bench: m.bench - then.bench, side: m.side - then.side}
}

func (m cpuMark) add(o cpuMark) cpuMark {
	return cpuMark{busy: m.busy + o.busy, idle: m.idle + o.idle, bench: m.bench + o.bench, side: m.side + o.side}
}

// idleShare is the part of the cores' time that was idle.
func (m cpuMark) idleShare() float64 {
	if m.busy+m.idle <= 0 {
		return 0
	}
	return float64(m.idle) / float64(m.busy+m.idle)
}

// measureCPU runs fn and returns the CPU it cost.
func measureCPU(side func() (time.Duration, error), fn func() error) (cpuMark, error) {
	before, err := markCPU(side)
	if err != nil {
		return cpuMark{}, err
	}
	if err := fn(); err != nil {
		return cpuMark{}, err
	}
	after, err := markCPU(side)
	return after.since(before), err
}

func rusage(who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU reads the busy and idle time of all cores from /proc/stat.
func machineCPU() (busy, idle time.Duration, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, errors.New("/proc/stat is empty")
	}
	return parseMachineCPU(sc.Text())
}

// parseMachineCPU reads /proc/stat's first line: user, nice, system,
// idle, iowait, irq, softirq and steal, in USER_HZ ticks (100 a second).
func parseMachineCPU(line string) (busy, idle time.Duration, err error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	const tick = 10 * time.Millisecond
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q", v)
		}
		if i == 3 || i == 4 { // idle, iowait
			idle += time.Duration(n) * tick
		} else {
			busy += time.Duration(n) * tick
		}
	}
	return busy, idle, nil
}

// processTreeCPU is the CPU time used by pid and its children (nginx's
// master and its workers).
func processTreeCPU(pid int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := proctest.ReadStat(p)
		if err != nil {
			continue // it exited meanwhile
		}
		if p == pid || st.PPid == pid {
			total += st.CPU
		}
	}
	return total, nil
}

// perAnswer is d spread over n answers, in microseconds.
func perAnswer(d time.Duration, n int) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f µs", float64(d.Microseconds())/float64(n))
}
