# repae build.  `make` builds the library and the program, `make test` runs the
# unit tests, `make test-asan` runs them again under ASan/UBSan, `make bench`
# compares our kernels against PyTorch, `make fixtures` regenerates the PyTorch
# parity fixtures (needs python3-torch).
#
# Every .c under src/ goes into librepae.a except src/cli/, which makes the
# program.  Every tests/test_*.c is its own test program.  New files need no
# Makefile edit.

CC      ?= gcc
PYTHON  ?= /usr/bin/python3
BUILD   ?= build
WERROR  ?=
OPT     ?= -O2 -march=native -fvect-cost-model=dynamic
# -fvect-cost-model=dynamic: gcc 12's -O2 vectorises only loops that need no
# runtime checks or epilogue ("very-cheap"), which left many of our plain
# elementwise loops scalar; the dynamic model vectorises them (7-8 % off the
# small REPA-E step, session 12).  It reorders no sum: a float reduction is
# only vectorised where the source says `omp simd reduction`, so results
# stay bit-identical (checked on every phase of the step).
# Never -ffast-math: it changes results (and broke llm.c's GELU backward).
# -fno-math-errno changes no result (nothing reads errno after a math call):
# sqrtf becomes one instruction that `omp simd` loops can vectorise.
# -fno-trapping-math changes no result either (nothing reads the floating-
# point exception flags; PyTorch builds with it too): without AVX-512's
# masks gcc will not turn a float comparison inside a loop into a select
# under trapping math, so on AVX2 CPUs fast_expf's loops (SiLU, GELU,
# softmax) stayed scalar, 9x slower (session 21).
CFLAGS  += -std=c11 -D_GNU_SOURCE -fno-math-errno -fno-trapping-math -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(OPT) -g -fopenmp -MMD -MP $(WERROR) $(EXTRA_CFLAGS)
CPPFLAGS += -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp
# Link the OpenMP build of OpenBLAS explicitly, whichever variant the system
# alternatives point at: one thread pool (libgomp) for BLAS and our loops.
BLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -ldnnl -llapacke -lcjson -lpng -ljpeg -lz -lm -fopenmp $(EXTRA_LDFLAGS)

# MPI (data-parallel training and sampling, src/core/dist.c): on when OpenMPI's
# mpicc is installed, MPI=0 builds the one-process program.
MPI ?= $(if $(shell command -v mpicc 2>/dev/null),1,0)
ifeq ($(MPI),1)
CPPFLAGS += -DREPAE_MPI $(shell mpicc --showme:compile)
LDLIBS   += $(shell mpicc --showme:link)
endif

LIB_SRC  := $(shell find src -name '*.c' ! -path 'src/cli/*' | sort)
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_UTIL_SRC := $(filter-out $(TEST_SRC),$(sort $(wildcard tests/*.c)))
BENCH_SRC := $(sort $(wildcard bench/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_UTIL_OBJ := $(TEST_UTIL_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

LIB      := $(BUILD)/librepae.a
PROGRAM  := $(BUILD)/repae

.PHONY: all test test-asan test-no-avx512 coverage mutants bench bench-paper bench-targets fixtures clean fuzz fuzz-build fuzz-replay
.SECONDARY:
all: $(PROGRAM) repae

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c $< -o $@

# dist.o is the only object that depends on MPI: a stamp, touched when MPI
# changes, rebuilds it (and so the library and programs).
$(shell mkdir -p $(BUILD) && [ -e $(BUILD)/.mpi-$(MPI) ] || { rm -f $(BUILD)/.mpi-*; touch $(BUILD)/.mpi-$(MPI); })
$(BUILD)/src/core/dist.o: $(BUILD)/.mpi-$(MPI)

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(PROGRAM): $(CLI_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# A link at the top so the README can say ./repae.
repae: $(PROGRAM)
	ln -sf $(PROGRAM) repae

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_UTIL_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# test_model_files checks a helper of the command line: that object is linked
# in too, ahead of the library it calls.
$(BUILD)/tests/test_model_files: $(BUILD)/tests/test_model_files.o $(BUILD)/src/cli/model_files.o $(TEST_UTIL_OBJ) $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test: $(TEST_BIN) $(PROGRAM)
	@BUILD=$(BUILD) sh tests/run_tests.sh $(TEST_BIN)

# gcc's UBSan checks: its `undefined` group leaves out float-to-int casts
# that overflow (a file's 1e300 cast to int), which clang's includes.
GCC_UBSAN := undefined,float-cast-overflow

# Same tests, same optimisation flags, with the sanitizers (a separate build dir).
# Leaks are errors too, in the test programs and in every `repae` they run
# (mpirun's ranks inherit the environment); tests/lsan.supp names the
# libraries whose own allocations are not ours to free.
test-asan:
	ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 $(MAKE) BUILD=build-asan EXTRA_CFLAGS="-fsanitize=address,$(GCC_UBSAN) -fno-omit-frame-pointer -fno-sanitize-recover=$(GCC_UBSAN)" \
	        EXTRA_LDFLAGS="-fsanitize=address,$(GCC_UBSAN)" test

# The tests whose guarantees rest on our GEMM (a row's bits do not depend on
# its batch, so batch sizes and MPI splits do not change results), built as
# for a CPU without AVX-512: AVX2 code, gemm_avx512_supported() false, our
# AVX2 kernels (docs/testing.md).  Needs a CPU with AVX2.
NO_AVX512_TESTS := test_gemm test_conv2d test_sample_cli test_mpi
test-no-avx512:
	$(MAKE) BUILD=build-no-avx512 OPT="-O2 -march=x86-64-v3 -fvect-cost-model=dynamic" \
	        EXTRA_CFLAGS="-DREPAE_WITHOUT_AVX512 $(EXTRA_CFLAGS)" \
	        TEST_BIN="$(NO_AVX512_TESTS:%=build-no-avx512/tests/%)" test

# Which lines of src/ the suite runs (tests/coverage.sh; not part of CI):
# the same tests built with gcc's --coverage in build-cov, -O1 so that lines
# map to code, atomic counters because the tests run OpenMP teams.
coverage:
	@rm -f $$(find build-cov -name '*.gcda' 2>/dev/null)
	$(MAKE) BUILD=build-cov OPT="-O1 -march=native" EXTRA_CFLAGS="--coverage -fprofile-update=atomic" \
	        EXTRA_LDFLAGS=--coverage test
	sh tests/coverage.sh build-cov

# Mutation testing of one file against the tests named (tests/mutants.sh; not
# part of CI): make mutants MUTATE=src/ops/loss.c TESTS="test_loss".
mutants:
	@[ -n "$(MUTATE)" ] && [ -n "$(TESTS)" ] || { echo 'make mutants MUTATE=<src file> TESTS="<test programs>"' >&2; exit 1; }
	sh tests/mutants.sh $(MUTATE) $(TESTS)

bench: $(BENCH_BIN)
	@PYTHON=$(PYTHON) BUILD=$(BUILD) sh bench/run_bench.sh

# One REPA-E step at the paper's scale (SD-VAE, SiT-B/2, DINOv2-B, PatchGAN,
# LPIPS at 256², batch 2) next to torch's: ~7 minutes, not part of `make bench`.
bench-paper: $(BENCH_BIN)
	@PYTHON=$(PYTHON) BUILD=$(BUILD) BENCH_PAPER=1 BENCH_ONLY=repae_step_sitb2_256_B2 sh bench/run_bench.sh

# The performance issue's verdict on this host: BENCH_RUNS complete `make
# bench` runs (each table kept as $(BUILD)/bench/table-run<i>.txt), then
# bench/targets.sh on their medians.
BENCH_RUNS ?= 3
bench-targets: $(BENCH_BIN)
	@for i in $$(seq $(BENCH_RUNS)); do \
	    echo "=== make bench, run $$i of $(BENCH_RUNS)"; \
	    PYTHON=$(PYTHON) BUILD=$(BUILD) sh bench/run_bench.sh || exit 1; \
	    cp $(BUILD)/bench/table.txt $(BUILD)/bench/table-run$$i.txt; \
	done; \
	echo; sh bench/targets.sh $$(seq -f "$(BUILD)/bench/table-run%g.txt" $(BENCH_RUNS))

fixtures:
	@for f in dev/ref/*_ref.py; do echo "== $$f"; $(PYTHON) $$f || exit 1; done

# ---- fuzzing (docs/testing.md) ----
# Every fuzz/fuzz_<target>.c is a libFuzzer harness (LLVMFuzzerTestOneInput).
# `make fuzz FUZZ_SECONDS=60` builds them with clang -fsanitize=fuzzer and runs
# each for that long (or FUZZ_RUNS executions; FUZZ_ONLY="npz idx" picks
# targets) on its corpus (fuzz/corpus/<target>/, read-only seeds;
# new finds go to build-fuzz/corpus/<target>/, crashes to build-fuzz/crashes/).
# `make fuzz-replay` builds the same harnesses with gcc + ASan/UBSan and a
# small main() (fuzz/replay_main.c) and runs every committed corpus file once:
# the regression test, no clang needed.  Both define REPAE_FUZZ (die() then
# longjmps back to the harness) and wrap the allocation and file functions so
# a rejected input leaks nothing (fuzz/common.c).
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
FUZZ_ONLY ?= $(FUZZ_TARGETS)
FUZZ_TARGETS := $(sort $(patsubst fuzz_%,%,$(basename $(notdir $(wildcard fuzz/fuzz_*.c)))))
FUZZ_WRAPS := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=aligned_alloc,--wrap=strdup \
              -Wl,--wrap=fopen,--wrap=fdopen,--wrap=fclose,--wrap=open,--wrap=close,--wrap=gzdopen,--wrap=gzopen \
              -Wl,--wrap=gzclose,--wrap=opendir,--wrap=closedir,--wrap=mmap,--wrap=munmap,--wrap=getline,--wrap=__getdelim,--wrap=exit
FUZZ_LIBS := -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -ldnnl -llapacke -lcjson -lpng -ljpeg -lz -lm -lgomp
# No -fopenmp: the harnesses are single-threaded (OpenMP pragmas are ignored,
# libgomp only provides omp_* for the few direct calls).
# -Wno-unused-variable: loop bounds used only in OpenMP if() clauses, ignored here.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -DREPAE_FUZZ -DIMAGE_MAX_PIXELS='((size_t)1 << 22)' -g -O1 \
               -fno-omit-frame-pointer -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
               -Wno-unknown-pragmas -Wno-unused-variable $(WERROR) -Isrc -Ifuzz -I/usr/include/x86_64-linux-gnu/openblas-openmp
FUZZ_LIB_SRC := $(filter-out src/core/omp_spin.c,$(LIB_SRC))
# clang 14 has no _Float16 on x86 without AVX512-FP16; its storage-only __fp16
# converts the same way (round to nearest even, via compiler-rt's builtins).
CLANG_F16 := -D_Float16=__fp16

build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(CLANG_F16) -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	    -MMD -MP -c $< -o $@
# The harness plumbing is not code under test: no coverage feedback from it.
build-fuzz/obj/fuzz/common.o: fuzz/common.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=address,undefined -MMD -MP -c $< -o $@
build-fuzz/librepae.a: $(FUZZ_LIB_SRC:%.c=build-fuzz/obj/%.o)
	@rm -f $@
	ar rcs $@ $^
build-fuzz/fuzz_%: build-fuzz/obj/fuzz/fuzz_%.o build-fuzz/obj/fuzz/common.o build-fuzz/librepae.a
	clang -fsanitize=fuzzer,address,undefined -rtlib=compiler-rt $^ -o $@ $(FUZZ_WRAPS) $(FUZZ_LIBS)

build-fuzz-replay/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(FUZZ_CFLAGS) -fsanitize=address,$(GCC_UBSAN) -fno-sanitize-recover=$(GCC_UBSAN) -MMD -MP -c $< -o $@
build-fuzz-replay/librepae.a: $(FUZZ_LIB_SRC:%.c=build-fuzz-replay/obj/%.o)
	@rm -f $@
	ar rcs $@ $^
build-fuzz-replay/fuzz_%: build-fuzz-replay/obj/fuzz/fuzz_%.o build-fuzz-replay/obj/fuzz/common.o \
                          build-fuzz-replay/obj/fuzz/replay_main.o build-fuzz-replay/librepae.a
	$(CC) -fsanitize=address,$(GCC_UBSAN) $^ -o $@ $(FUZZ_WRAPS) $(FUZZ_LIBS)

fuzz-build: $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)

fuzz: fuzz-build
	@for t in $(FUZZ_ONLY); do \
	    mkdir -p build-fuzz/corpus/$$t build-fuzz/crashes/$$t fuzz/corpus/$$t; \
	    echo "== $$t ($(FUZZ_SECONDS) s)"; \
	    ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 nice -n 10 ./build-fuzz/fuzz_$$t \
	        build-fuzz/corpus/$$t fuzz/corpus/$$t -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -timeout=10 -rss_limit_mb=4096 \
	        -close_fd_mask=1 -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/$$t/ 2>&1 \
	        | grep -E '^(#[0-9]+ *DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY|Done)' || true; \
	done

fuzz-replay: $(FUZZ_TARGETS:%=build-fuzz-replay/fuzz_%)
	@for t in $(FUZZ_TARGETS); do \
	    printf '%s: ' $$t; \
	    if [ ! -d fuzz/corpus/$$t ]; then echo "no corpus (fuzz/corpus/$$t)"; continue; fi; \
	    ASAN_OPTIONS=detect_leaks=0 ./build-fuzz-replay/fuzz_$$t fuzz/corpus/$$t > build-fuzz-replay/$$t.log 2>&1 \
	        || { cat build-fuzz-replay/$$t.log; exit 1; }; \
	    tail -n 1 build-fuzz-replay/$$t.log; \
	done

clean:
	rm -rf build build-asan build-cov build-mut build-fuzz build-fuzz-replay repae

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
ifneq ($(filter fuzz fuzz-build fuzz-replay build-fuzz%,$(MAKECMDGOALS)),)
-include $(shell find build-fuzz build-fuzz-replay -name '*.d' 2>/dev/null)
endif
