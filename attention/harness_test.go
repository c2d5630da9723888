package attention_test

import (
	"fmt"
	"math/rand/v2"
	"os"
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

func TestMain(m *testing.M) {
	code := m.Run()
	shared.Close()
	os.Exit(code)
}

// engine returns the engine shared by the package's tests; validation errors fail the test that
// was running when they were reported.
func engine(t testing.TB) *attention.Engine {
	t.Helper()
	sharedOnce.Do(func() {
		shared, sharedErr = attention.New(attention.Config{Validation: testenv.Validation(), PipelineCacheDir: "-"})
	})
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
