# plansim — build, test, bench, demo.  GNU make; C17; dependencies through
# pkg-config; CUDA sources (*.cu) only when nvcc is found (PS_NO_CUDA=1 to
# leave them out).  Objects go under build/ (normal) and build/san/
# (ASan+UBSan); tests link the static library libplansim.a.

PREFIX ?= /usr/local
BUILD := build
SAN := $(BUILD)/san

PKGS := hdf5 jansson openblas zlib gsl
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
# GSL's own CBLAS would shadow OpenBLAS; link libgsl alone.
PKG_LIBS := $(filter-out -lgslcblas,$(shell pkg-config --libs $(PKGS) 2>/dev/null))
CMOCKA_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

# Truncating snprintf into fixed buffers is deliberate throughout.
WARN := -std=c17 -Wall -Wextra -Werror -Wno-format-truncation -D_GNU_SOURCE
OPT ?= -O2 -g
CPPFLAGS_ALL := -I. -I$(BUILD) $(PKG_CFLAGS)
CFLAGS_ALL := $(WARN) $(OPT) $(CFLAGS)
LDLIBS_ALL := $(PKG_LIBS) -lm -lpthread -ldl
SANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

# CUDA: found on PATH or in the usual place; the binary still starts without
# a driver (runtime, cuBLAS, CUPTI load it themselves; never -lcuda).
NVCC := $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifeq ($(PS_NO_CUDA),1)
NVCC :=
endif
CU_SRC := $(shell find kernels profile real -name '*.cu' 2>/dev/null | sort)
ifneq ($(NVCC),)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
CPPFLAGS_ALL += -DPS_HAVE_CUDA=1 -I$(CUDA_HOME)/include
CU_OBJ := $(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(CU_SRC))
CUDA_LIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudart -lcublas -lcublasLt -lcupti -lstdc++
NVCCFLAGS := -O2 -std=c++17 -I. -I$(BUILD) -Xcompiler -Wall,-fPIC \
  -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90
else
CU_OBJ :=
CUDA_LIBS :=
endif

LIB_SRC := $(shell find common kernels profile costmodel sim real experiments -name '*.c' \
  -not -path 'experiments/main.c' 2>/dev/null | sort)
MAIN_SRC := experiments/main.c
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_NAMES := $(patsubst tests/%.c,%,$(TEST_SRC))

OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
SAN_OBJ := $(patsubst %.c,$(SAN)/obj/%.o,$(LIB_SRC))

.PHONY: all deps test test-fast test-san bench demo install clean valgrind models FORCE
all: $(BUILD)/plansim plansim

deps:
	@./scripts/deps.sh

$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@c=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	 git diff --quiet HEAD -- 2>/dev/null || c="$$c-dirty"; \
	 printf '#define PS_GIT_COMMIT "%s"\n' "$$c" > $@.tmp; \
	 cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

# V=1 shows full command lines.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

$(BUILD)/obj/%.o: %.c | $(BUILD)/version.h
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CPPFLAGS_ALL) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(dir $@)
	$(call say,NVCC,$<)
	$(Q)$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(SAN)/obj/%.o: %.c | $(BUILD)/version.h
	@mkdir -p $(dir $@)
	$(call say,CC-SAN,$<)
	$(Q)$(CC) $(filter-out -DPS_HAVE_CUDA=1,$(CPPFLAGS_ALL)) $(WARN) $(SANFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/common/version.o $(SAN)/obj/common/version.o: $(BUILD)/version.h

$(BUILD)/libplansim.a: $(OBJ) $(CU_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(SAN)/libplansim.a: $(SAN_OBJ)
	@rm -f $@
	$(call say,AR,$@)
	$(Q)ar rcs $@ $^

$(BUILD)/plansim: $(BUILD)/obj/$(MAIN_SRC:.c=.o) $(BUILD)/libplansim.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) $(CUDA_LIBS)

$(SAN)/plansim: $(SAN)/obj/$(MAIN_SRC:.c=.o) $(SAN)/libplansim.a
	$(call say,LINK,$@)
	$(Q)$(CC) $(SANFLAGS) -o $@ $^ $(LDLIBS_ALL)

# A convenience link at the top of the checkout.
plansim: $(BUILD)/plansim
	@ln -sf $(BUILD)/plansim plansim

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(BUILD)/libplansim.a
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS_ALL) $(CUDA_LIBS)

$(SAN)/tests/%: $(SAN)/obj/tests/%.o $(SAN)/libplansim.a
	@mkdir -p $(dir $@)
	$(call say,LINK,$@)
	$(Q)$(CC) $(SANFLAGS) -o $@ $^ $(CMOCKA_LIBS) $(LDLIBS_ALL)

TEST_BINS := $(addprefix $(BUILD)/tests/,$(TEST_NAMES))
SAN_TEST_BINS := $(addprefix $(SAN)/tests/,$(TEST_NAMES))

# make test: set-up, then every test under ASan+UBSan, then the normal build
# (last, so the output ends with cmocka's summary).  SANITIZE=0 skips the
# sanitizer pass.
SANITIZE ?= 1
test: deps
	@$(MAKE) --no-print-directory all $(TEST_BINS) $(if $(filter 0,$(SANITIZE)),,$(SAN)/plansim $(SAN_TEST_BINS))
	@$(if $(filter 0,$(SANITIZE)),true,./tests/run.sh $(SAN))
	@./tests/run.sh $(BUILD)

test-fast: all $(TEST_BINS)
	@./tests/run.sh $(BUILD)

# Benchmarks measure; they assert nothing.  Numbers go to docs/, not tests.
bench: deps
	@$(MAKE) --no-print-directory all
	./$(BUILD)/plansim des bench
	./$(BUILD)/plansim pipeline bench
	./$(BUILD)/plansim pipeline plan-bench
	./$(BUILD)/plansim real bench

# make models: the full-size trained models, deterministic from a seed, into
# a git-ignored cache (MODELS_DIR); a model already there is kept (delete it
# to retrain).  Tests and --quick experiments train reduced models instead.
MODELS_DIR ?= models
MODEL_SEED ?= 1
MODEL_FILES := $(MODELS_DIR)/cnn_fmnist.bin $(MODELS_DIR)/gpt_fortunes.bin
models: deps
	@$(MAKE) --no-print-directory all $(MODEL_FILES)

$(MODELS_DIR)/cnn_fmnist.bin: | $(BUILD)/plansim
	@mkdir -p $(MODELS_DIR)
	./$(BUILD)/plansim real train --model cnn --seed $(MODEL_SEED) -o $@

$(MODELS_DIR)/gpt_fortunes.bin: | $(BUILD)/plansim
	@mkdir -p $(MODELS_DIR)
	./$(BUILD)/plansim real train --model gpt --seed $(MODEL_SEED) -o $@

demo: deps
	@$(MAKE) --no-print-directory all
	@./scripts/demo.sh

valgrind: all $(TEST_BINS)
	@VALGRIND=1 ./tests/run.sh $(BUILD)

install: all
	install -D -m 755 $(BUILD)/plansim $(DESTDIR)$(PREFIX)/bin/plansim
	install -d $(DESTDIR)$(PREFIX)/share/plansim/plots $(DESTDIR)$(PREFIX)/share/plansim/experiments
	install -m 644 plots/*.gp $(DESTDIR)$(PREFIX)/share/plansim/plots/
	install -m 644 experiments/*.json $(DESTDIR)$(PREFIX)/share/plansim/experiments/
	install -d $(DESTDIR)$(PREFIX)/share/plansim/suites $(DESTDIR)$(PREFIX)/share/plansim/clusters
	install -m 644 profile/suites/*.json $(DESTDIR)$(PREFIX)/share/plansim/suites/
	install -m 644 experiments/clusters/*.json $(DESTDIR)$(PREFIX)/share/plansim/clusters/

clean:
	rm -rf $(BUILD) plansim

-include $(OBJ:.o=.d) $(SAN_OBJ:.o=.d) $(BUILD)/obj/experiments/main.d
