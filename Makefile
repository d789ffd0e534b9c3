# Thin front for CMake. The two commands a new user needs:
#   make run    install what is missing, build, start the demo (gateway + simulators)
#   make test   install what is missing, build, run every test
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=
ifeq ($(CI),true)
CMAKE_FLAGS += -DCMX_WERROR=ON
endif

.PHONY: all build deps run test unit e2e asan fuzz fuzz-smoke bench format format-check clean

all: build

build:
	@scripts/install-deps.sh build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

deps:
	@scripts/install-deps.sh build run test

run:
	@scripts/install-deps.sh run
	@$(MAKE) --no-print-directory build
	@scripts/demo.sh

test:
	@scripts/install-deps.sh test
	@$(MAKE) --no-print-directory build
	@scripts/test.sh $(BUILD)

unit: build
	@cd $(BUILD) && ctest --output-on-failure

e2e: build
	@CLOUDMUX_BIN=$(BUILD)/cloudmux node --test --test-concurrency=2 tests/e2e/

# The whole suite under AddressSanitizer + UndefinedBehaviorSanitizer (clang).
asan:
	@scripts/install-deps.sh test
	@CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCMX_ASAN=ON -DCMX_UBSAN=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j$(JOBS)
	@scripts/test.sh build-asan

fuzz:
	@scripts/install-deps.sh fuzz
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug -DCMX_FUZZ=ON -DCMX_ASAN=ON -DCMX_UBSAN=ON -DCMX_TESTS=OFF >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	@scripts/fuzz.sh build-fuzz $${FUZZ_SECONDS:-60}

fuzz-smoke:
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-15} $(MAKE) --no-print-directory fuzz

bench:
	@scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory build
	@bench/run.sh

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build build-asan build-fuzz
