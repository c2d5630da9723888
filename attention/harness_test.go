package attention_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/vkattn/vkattn/attention"
	"github.com/vkattn/vkattn/internal/testenv"
)

var (
	shared     *attention.Engine
	sharedErr  error
	sharedOnce sync.Once
)

// TestMain opens the shared engine, runs the tests and then closes the engine: validation errors
// reported as its device is destroyed (objects left alive) fail the run. Where this machine has
// no Vulkan device and none is required, the examples, which cannot skip, are left out. The
// engine is opened first and stays open, rather than probed with an instance of its own: an
// instance destroyed before the next is created lets the loader unload the driver, and
// lavapipe's LLVM then crashes now and then compiling pipelines in the reloaded driver.
func TestMain(m *testing.M) {
	flag.Parse()
	openShared()
	if sharedErr != nil && testenv.IsNoDevice(sharedErr) && !testenv.Required() {
		if skip := flag.Lookup("test.skip"); skip != nil && skip.Value.String() == "" {
			skip.Value.Set("^Example")
			fmt.Fprintf(os.Stderr, "no Vulkan device, examples not run: %v\n", sharedErr)
		}
	}
	code := m.Run()
	if err := closeShared(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// openShared opens the engine the package's tests share, once; sharedErr says why not.
func openShared() {
	sharedOnce.Do(func() {
		shared, sharedErr = attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	})
}

// closeShared closes the shared engine, if one was opened, and returns the validation errors
// reported as it closed, leaks at vkDestroyDevice included.
func closeShared() error {
	if shared == nil {
		return nil
	}
	shared.Close()
	if err := shared.Instance().CheckValidation(); err != nil {
		return fmt.Errorf("closing the shared engine: %w", err)
	}
	return nil
}

// engine returns the engine shared by the package's tests; validation errors fail the test that
// was running when they were reported.
func engine(t testing.TB) *attention.Engine {
	t.Helper()
	openShared()
	if sharedErr != nil {
		testenv.NoDevice(t, sharedErr)
	}
	testenv.CheckValidation(t, shared.Instance())
	t.Cleanup(func() { testenv.CheckValidation(t, shared.Instance()) })
	return shared
}

// seed returns a fresh seed, or $VKATTN_SEED to replay a failure.
func seed(t testing.TB) uint64 {
	if s := os.Getenv("VKATTN_SEED"); s != "" {
		var v uint64
		if _, err := fmt.Sscan(s, &v); err != nil {
			t.Fatalf("VKATTN_SEED=%q: %v", s, err)
		}
		return v
	}
	return rand.Uint64()
}

// An object left alive on the shared engine's device fails the test binary when TestMain closes
// the engine, though every test passed: a child process leaks a VkBuffer.
func TestSharedEngineLeakFailsRun(t *testing.T) {
	e := engine(t)
	if testenv.IsChild(t) {
		if _, err := e.Allocator().Device().NewBuffer(256); err != nil { // never closed
			t.Fatal(err)
		}
		return
	}
	if !e.Instance().Validation() {
		t.Skip("validation is off: no leak is reported")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), testenv.ChildEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("a leaked VkBuffer did not fail the run:\n%s", out)
	}
	if !strings.Contains(string(out), "closing the shared engine") || !strings.Contains(string(out), "VkBuffer") {
		t.Fatalf("the run failed without reporting the leak: %v\n%s", err, out)
	}
}
