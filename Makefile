# vkattn: `make run` runs one FlashAttention forward on the default device and checks it;
# `make test` runs the test suite (on lavapipe where there is no GPU).

GO        ?= go
TOOLBIN   := .toolchain/bin
GLSLANG   ?= $(TOOLBIN)/glslangValidator
SPIRV_VAL ?= $(TOOLBIN)/spirv-val
# Lavapipe's subgroup width follows LP_NATIVE_VECTOR_WIDTH: 128, 256, 512 give 4, 8, 16 lanes;
# `go test ./...` runs at the default (256 on x86-64 with AVX2), the loop at the other two.
LP_WIDTHS ?= 128 512

.PHONY: deps go-version toolchain shaders shaders-check run test test-lavapipe-widths bench conformance fuzz

deps: go-version
	@bash tools/setup/deps.sh

# Go is not installed by deps: say so plainly when it is missing or too old.
go-version:
	@v=$$($(GO) env GOVERSION 2>/dev/null | sed 's/^go//'); \
	case "$$v" in 1.2[6-9]*|1.[3-9][0-9]*|[2-9].*) ;; \
	*) echo "vkattn needs Go 1.26 or newer (found: $${v:-none}); see https://go.dev/doc/install" >&2; exit 1;; esac

toolchain:
	@bash tools/setup/glslang.sh

shaders: toolchain
	$(GO) run ./tools/shaders -glslang $(GLSLANG) -spirv-val $(SPIRV_VAL)

shaders-check: toolchain
	$(GO) run ./tools/shaders -check -glslang $(GLSLANG) -spirv-val $(SPIRV_VAL)

run: deps
	$(GO) run ./tools/vkattn run

# make test installs lavapipe, so a device exists: VKATTN_REQUIRE_DEVICE=1 makes a test that
# finds none fail instead of skip.
test: deps
	$(GO) vet ./...
	VKATTN_REQUIRE_DEVICE=1 $(GO) test -count=1 -timeout 40m ./...
	$(MAKE) --no-print-directory test-lavapipe-widths

# The forward and decode kernels again at each lavapipe subgroup width, so none assumes one width.
# The quantized decode tests run at the default width only: lavapipe takes tens of seconds to
# compile a subgroup decode pipeline at d = 128 (cold, 2 cores: about 20 s for INT8 K/V, 40 s for
# fp16), the quantized tests build many, and their lane layout is the float kernel's, which runs
# here at every width.
test-lavapipe-widths:
	@for w in $(LP_WIDTHS); do \
		echo "== LP_NATIVE_VECTOR_WIDTH=$$w"; \
		VKATTN_REQUIRE_DEVICE=1 LP_NATIVE_VECTOR_WIDTH=$$w $(GO) test -count=1 -timeout 40m -run 'Forward|Subgroup|Decode' -skip 'Quantized' ./attention/ || exit 1; \
	done

bench: deps
	$(GO) run ./tools/vkattn bench

conformance: deps
	@mkdir -p out
	$(GO) run ./tools/vkattn conformance -out out/conformance

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzForwardOptions -fuzztime 60s ./attention/
