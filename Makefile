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
OPT     ?= -O2 -march=native
# Never -ffast-math: it changes results (and broke llm.c's GELU backward).
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers $(OPT) -g -fopenmp -MMD -MP $(WERROR) $(EXTRA_CFLAGS)
CPPFLAGS += -Isrc -I/usr/include/x86_64-linux-gnu/openblas-openmp
# Link the OpenMP build of OpenBLAS explicitly, whichever variant the system
# alternatives point at: one thread pool (libgomp) for BLAS and our loops.
BLAS_DIR ?= /usr/lib/x86_64-linux-gnu/openblas-openmp
LDLIBS  += -L$(BLAS_DIR) -Wl,-rpath,$(BLAS_DIR) -lopenblas -llapacke -lcjson -lpng -ljpeg -lz -lm -fopenmp $(EXTRA_LDFLAGS)

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

.PHONY: all test test-asan bench fixtures clean
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

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

test: $(TEST_BIN) $(PROGRAM)
	@BUILD=$(BUILD) sh tests/run_tests.sh $(TEST_BIN)

# Same tests, same optimisation flags, with the sanitizers (a separate build dir).
test-asan:
	ASAN_OPTIONS=detect_leaks=0 $(MAKE) BUILD=build-asan EXTRA_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        EXTRA_LDFLAGS="-fsanitize=address,undefined" test

bench: $(BENCH_BIN)
	@PYTHON=$(PYTHON) BUILD=$(BUILD) sh bench/run_bench.sh

fixtures:
	@for f in dev/ref/*_ref.py; do echo "== $$f"; $(PYTHON) $$f || exit 1; done

clean:
	rm -rf build build-asan repae

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
