// Go micro benchmarks for gort's benchmark harness. Same subcommands and
// output format as tokio_micro / may_micro:
//
//	RESULT name=NAME n=N key=value ...
//
// GOMAXPROCS is Go's default (number of CPUs).
//
// Build: go build -o micro micro.go    Run: ./micro SUBCOMMAND [N]
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func statusKiB(field string) uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line[len(field)+1:])
			if len(fs) > 0 {
				v, _ := strconv.ParseUint(fs[0], 10, 64)
				return v
			}
		}
	}
	return 0
}

func rssKiB() uint64 { return statusKiB("VmRSS") }
func hwmKiB() uint64 { return statusKiB("VmHWM") }

// Same xorshift64* and [5ms,15ms) distribution as the Rust peers.
func timerDuration(i uint64) time.Duration {
	x := (i+1)*0x9E3779B97F4A7C15 | 1
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	r := x * 0x2545F4914F6CDD1D
	return time.Duration(5000+r%10000) * time.Microsecond
}

func nsPer(t time.Time, n uint64) string {
	return fmt.Sprintf("%.1f", float64(time.Since(t).Nanoseconds())/float64(n))
}

func spawnJoinBatch(n uint64) {
	t := time.Now()
	var wg sync.WaitGroup
	for done := uint64(0); done < n; {
		b := n - done
		if b > 1000 {
			b = 1000
		}
		wg.Add(int(b))
		for i := uint64(0); i < b; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		done += b
	}
	fmt.Printf("RESULT name=spawn_join_batch n=%d ns_per_op=%s\n", n, nsPer(t, n))
}

func spawnJoinAll(n uint64) {
	t := time.Now()
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	fmt.Printf("RESULT name=spawn_join_all n=%d ns_per_op=%s peak_rss_kib=%d\n", n, nsPer(t, n), hwmKiB())
}

func chanPingpong(n uint64) {
	ping := make(chan uint64)
	pong := make(chan uint64)
	done := make(chan struct{})
	go func() {
		for v := range ping {
			pong <- v
		}
		close(done)
	}()
	t := time.Now()
	for i := uint64(0); i < n; i++ {
		ping <- i
		<-pong
	}
	res := nsPer(t, n)
	close(ping)
	<-done
	fmt.Printf("RESULT name=chan_pingpong n=%d ns_per_op=%s chan=\"unbuffered x2\"\n", n, res)
}

func parked(n uint64) {
	before := rssKiB()
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	started.Add(int(n))
	finished.Add(int(n))
	for i := uint64(0); i < n; i++ {
		go func() {
			started.Done()
			<-release
			finished.Done()
		}()
	}
	started.Wait()
	after := rssKiB()
	var diff uint64
	if after > before {
		diff = after - before
	}
	close(release)
	finished.Wait()
	fmt.Printf("RESULT name=parked n=%d kib_per_task=%.3f rss_before_kib=%d rss_after_kib=%d\n", n, float64(diff)/float64(n), before, after)
}

func timers(n uint64) {
	before := rssKiB()
	t := time.Now()
	var wg sync.WaitGroup
	wg.Add(int(n))
	for i := uint64(0); i < n; i++ {
		d := timerDuration(i)
		go func() {
			time.Sleep(d)
			wg.Done()
		}()
	}
	wg.Wait()
	ms := float64(time.Since(t).Microseconds()) / 1e3
	peak := hwmKiB()
	var delta uint64
	if peak > before {
		delta = peak - before
	}
	fmt.Printf("RESULT name=timers n=%d total_ms=%.1f rss_delta_kib=%d rss_before_kib=%d\n", n, ms, delta, before)
}

func fanin(n uint64) {
	const producers = 100
	ch := make(chan uint64, 1024)
	t := time.Now()
	var wg sync.WaitGroup
	wg.Add(producers)
	for p := uint64(0); p < producers; p++ {
		cnt := n / producers
		if p < n%producers {
			cnt++
		}
		go func(cnt uint64) {
			for i := uint64(0); i < cnt; i++ {
				ch <- i
			}
			wg.Done()
		}(cnt)
	}
	go func() { wg.Wait(); close(ch) }()
	got := uint64(0)
	for range ch {
		got++
	}
	if got != n {
		fmt.Printf("RESULT name=fanin n=%d error=\"got %d messages\"\n", n, got)
		return
	}
	secs := time.Since(t).Seconds()
	fmt.Printf("RESULT name=fanin n=%d msgs_per_sec=%.0f chan=\"chan(1024)\"\n", n, float64(n)/secs)
}

func mutex(n uint64) {
	const tasks = 1000
	var mu sync.Mutex
	counter := uint64(0)
	var wg sync.WaitGroup
	wg.Add(tasks)
	t := time.Now()
	for k := uint64(0); k < tasks; k++ {
		cnt := n / tasks
		if k < n%tasks {
			cnt++
		}
		go func(cnt uint64) {
			for i := uint64(0); i < cnt; i++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}(cnt)
	}
	wg.Wait()
	res := nsPer(t, n)
	if counter != n {
		fmt.Printf("RESULT name=mutex n=%d error=\"counter %d\"\n", n, counter)
		return
	}
	fmt.Printf("RESULT name=mutex n=%d ns_per_op=%s\n", n, res)
}

func main() {
	defaults := map[string]uint64{
		"spawn_join_batch": 1000000, "spawn_join_all": 1000000, "chan_pingpong": 1000000,
		"parked": 100000, "timers": 100000, "fanin": 1000000, "mutex": 1000000,
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: micro SUBCOMMAND [N]")
		os.Exit(2)
	}
	name := os.Args[1]
	n, ok := defaults[name]
	if !ok {
		fmt.Fprintln(os.Stderr, "unknown subcommand", name)
		os.Exit(2)
	}
	if len(os.Args) > 2 {
		if v, err := strconv.ParseUint(os.Args[2], 10, 64); err == nil {
			n = v
		}
	}
	switch name {
	case "spawn_join_batch":
		spawnJoinBatch(n)
	case "spawn_join_all":
		spawnJoinAll(n)
	case "chan_pingpong":
		chanPingpong(n)
	case "parked":
		parked(n)
	case "timers":
		timers(n)
	case "fanin":
		fanin(n)
	case "mutex":
		mutex(n)
	}
}
