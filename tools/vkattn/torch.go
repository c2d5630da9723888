package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// torchScript is the PyTorch side of `vkattn bench -torch`, relative to the repository root.
const torchScript = "tools/torch/sdpa_bench.py"

// torchBackends are the SDPA backends the script times, in table order.
var torchBackends = []string{"flash", "cudnn", "efficient", "math"}

// torchShape is one shape as the script reads it.
type torchShape struct {
	ID     int    `json:"id"`
	B      int    `json:"b"`
	H      int    `json:"h"`
	Hk     int    `json:"hk"`
	Lq     int    `json:"lq"`
	Lk     int    `json:"lk"`
	D      int    `json:"d"`
	Causal bool   `json:"causal"`
	DType  string `json:"dtype"`
}

// torchResult is one line of the script's output.
type torchResult struct {
	ID     *int                `json:"id"`
	MS     map[string]*float64 `json:"ms"`
	TFLOPS map[string]*float64 `json:"tflops"`
	GBps   map[string]*float64 `json:"gbps"` // bytes of K and V over the time (decode)
	Errors map[string]string   `json:"errors"`
}

// findTorchScript returns the script's path: the given one, else tools/torch/sdpa_bench.py under
// the working directory or one of its parents, or beside the executable or one of its parents.
func findTorchScript(given string) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("bench: -torch-script: %w", err)
		}
		return given, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for {
			p := filepath.Join(dir, torchScript)
			if _, err := os.Stat(p); err == nil {
				return p, nil
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				break
			}
			dir = parent
		}
	}
	return "", fmt.Errorf("bench: cannot find %s from the working directory or the executable; run from the repository or pass -torch-script", torchScript)
}

// runTorch runs the PyTorch script on the shapes and returns its results by shape index and its
// header line. Its stderr (progress) goes to stderr.
func runTorch(ctx context.Context, python, script string, shapes []benchShape, warmup, iters int, stderr io.Writer) (map[int]torchResult, map[string]any, error) {
	var ts []torchShape
	for i, s := range shapes {
		ts = append(ts, torchShape{ID: i, B: s.B, H: s.H, Hk: s.H, Lq: s.L, Lk: s.L, D: s.D, Causal: s.Causal, DType: s.DType})
	}
	return runTorchShapes(ctx, python, script, ts, warmup, iters, stderr)
}

// runTorchShapes is runTorch for shapes as the script reads them (IDs 0, 1, ... in order).
func runTorchShapes(ctx context.Context, python, script string, shapes []torchShape, warmup, iters int, stderr io.Writer) (map[int]torchResult, map[string]any, error) {
	req := struct {
		Warmup int          `json:"warmup"`
		Iters  int          `json:"iters"`
		Shapes []torchShape `json:"shapes"`
	}{Warmup: max(warmup, 0), Iters: iters, Shapes: shapes}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, nil, err
	}
	// The script's stderr is copied by another goroutine: share stderr under a lock.
	stderr = &lockedWriter{w: stderr}
	fmt.Fprintf(stderr, "bench: PyTorch SDPA on %d shapes: %s %s\n", len(shapes), python, script)
	cmd := exec.CommandContext(ctx, python, script)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("bench: -torch %s: %w", python, err)
	}
	results := map[int]torchResult{}
	var header map[string]any
	var scriptErr string
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var probe map[string]any
		if json.Unmarshal(line, &probe) != nil {
			fmt.Fprintf(stderr, "torch: %s\n", line) // not ours: pass it on
			continue
		}
		if msg, ok := probe["error"].(string); ok {
			scriptErr = msg
			continue
		}
		if _, ok := probe["torch"]; ok && header == nil {
			header = probe
			continue
		}
		var r torchResult
		if err := json.Unmarshal(line, &r); err != nil || r.ID == nil || *r.ID < 0 || *r.ID >= len(shapes) {
			fmt.Fprintf(stderr, "torch: unexpected line: %s\n", line)
			continue
		}
		results[*r.ID] = r
	}
	scanErr := sc.Err()
	waitErr := cmd.Wait()
	switch {
	case scriptErr != "":
		return nil, nil, fmt.Errorf("bench: PyTorch script: %s", scriptErr)
	case waitErr != nil && len(results) == 0:
		return nil, nil, fmt.Errorf("bench: PyTorch script %s failed: %w", script, waitErr)
	case scanErr != nil:
		return nil, nil, fmt.Errorf("bench: reading the PyTorch script's output: %w", scanErr)
	case waitErr != nil:
		fmt.Fprintf(stderr, "bench: PyTorch script ended early (%v) after %d of %d shapes\n", waitErr, len(results), len(shapes))
	}
	if header == nil {
		return nil, nil, errors.New("bench: the PyTorch script printed no header line")
	}
	return results, header, nil
}

// lockedWriter serializes writes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
