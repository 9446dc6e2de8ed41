# smsubmit: GNU make.  `make`, `make run`, `make regress`, `make install`.
# SANITIZE=1 builds everything with AddressSanitizer and UBSan.

PREFIX	?= /usr/local
SBINDIR	?= $(PREFIX)/sbin
MANDIR	?= $(PREFIX)/share/man
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
RCDIR	?= /etc/rc.d
DESTDIR	?=

CC	?= cc
YACC	?= bison -y
PKG_CONFIG ?= pkg-config
PKGS	 = libtls libssl libcrypto libsasl2 libbsd-overlay libevent
ifeq ($(shell uname -s),Linux)
PKGS	+= libseccomp
endif

PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS   := $(shell $(PKG_CONFIG) --libs $(PKGS))

CFLAGS	?= -O2 -g
CFLAGS	+= -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
	   -Wmissing-prototypes -Wstrict-prototypes -Wshadow \
	   -D_FORTIFY_SOURCE=2 -D_GNU_SOURCE -fstack-protector-strong -fPIE \
	   -pthread -Icommon -Ismtpd $(PKG_CFLAGS)
LDFLAGS	+= -pie -pthread -Wl,-z,relro,-z,now
LDLIBS	+= $(PKG_LIBS)

ifeq ($(SANITIZE),1)
CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer \
	   -fno-sanitize-recover=undefined -U_FORTIFY_SOURCE
LDFLAGS	+= -fsanitize=address,undefined
BUILD	 = .build-sanitize
else
BUILD	 = .build-normal
endif

COMMON	 = common/log.o common/buf.o common/b64.o common/addr.o \
	   common/ipc.o common/body.o common/header.o common/file.o \
	   common/proxy.o
SMTPD	 = smtpd/smsubmit.o smtpd/proc.o smtpd/parse.o smtpd/listener.o \
	   smtpd/session.o smtpd/signer.o smtpd/auth.o smtpd/queue.o \
	   smtpd/relay.o smtpd/envelope.o smtpd/bounce.o smtpd/control.o \
	   smtpd/crypto.o smtpd/sandbox.o smtpd/check.o smtpd/keypair.o \
	   smtpd/userlimit.o smtpd/stats.o smtpd/spare.o smtpd/tlsbuf.o \
	   smtpd/scheduler.o smtpd/syncer.o smtpd/handshaker.o
UNIT	 = $(patsubst %.c,%,$(wildcard regress/unit/t_*.c))
# load generator and discarding relay host of `make bench` (before the
# rules that name them: make expands prerequisites as it reads them)
BENCHBIN = regress/bench/smtpload regress/bench/sink regress/bench/bodybench

all: smtpd/smsubmit

smtpd/smsubmit: $(SMTPD) $(COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# For the tests only: a listener that can be told to break its sandbox.
smtpd/smsubmit-regress: $(filter-out smtpd/session.o,$(SMTPD)) \
	    smtpd/session-regress.o $(COMMON)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

smtpd/session-regress.o: smtpd/session.c
	$(CC) $(CFLAGS) -DSMSUBMIT_REGRESS -c -o $@ $<

smtpd/parse.c: smtpd/parse.y
	$(YACC) -o $@ $<

# the generated parser is not ours to keep warning-free
smtpd/parse.o: CFLAGS += -Wno-shadow -Wno-missing-prototypes

# objects are rebuilt when SANITIZE changes
$(BUILD):
	rm -f .build-normal .build-sanitize
	touch $@

$(SMTPD) $(COMMON) smtpd/session-regress.o: common/*.h smtpd/smsubmit.h \
	    $(BUILD)

# the daemon's files that stand alone: the grammar, the envelope format
UNIT_OBJ = smtpd/parse.o smtpd/envelope.o smtpd/scheduler.o

regress/unit/%: regress/unit/%.c regress/unit/tap.h regress/unit/rnd.h \
	    regress/unit/body_model.h \
	    $(COMMON) $(UNIT_OBJ) \
	    $(BUILD)
	$(CC) $(CFLAGS) -Iregress/unit $(LDFLAGS) -o $@ $< $(COMMON) \
	    $(UNIT_OBJ) $(LDLIBS)

unit: $(UNIT)

# For the tests only: a full disk without mount(8), preloaded.  Never
# sanitized: it is loaded into whichever build is tested.
regress/shim/enospc.so: regress/shim/enospc.c
	$(CC) -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

regress: all unit smtpd/smsubmit-regress regress/shim/enospc.so $(BENCHBIN)
	python3 regress/run.py

regress/bench/smtpload: regress/bench/smtpload.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS) -pthread

regress/bench/sink: regress/bench/sink.c
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LDLIBS) -pthread

# the DATA framing alone, without the network
regress/bench/bodybench: regress/bench/bodybench.c $(COMMON) $(BUILD)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(COMMON) $(LDLIBS)

# BENCHTIME seconds of load per scenario; PEER=postfix runs Postfix too
bench: all $(BENCHBIN)
	PEER="$(PEER)" BENCHTIME="$(BENCHTIME)" BENCHIDLE="$(BENCHIDLE)" \
	    BENCHONLY="$(BENCHONLY)" BENCHREPEAT="$(BENCHREPEAT)" \
	    python3 regress/bench/bench.py

# libFuzzer harnesses (clang); FUZZTIME seconds each
fuzz:
	$(MAKE) -f regress/fuzz/Makefile run

run: all
	sh etc/run.sh

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(MANDIR)/man5
	install -m 555 smtpd/smsubmit $(DESTDIR)$(SBINDIR)/smsubmit
	install -m 444 smsubmit.8 $(DESTDIR)$(MANDIR)/man8/smsubmit.8
	install -m 444 etc/smsubmit.conf.5 \
	    $(DESTDIR)$(MANDIR)/man5/smsubmit.conf.5
	# the service, with the path smsubmit was installed to
	if [ "$$(uname -s)" = OpenBSD ]; then \
		install -d $(DESTDIR)$(RCDIR); \
		sed 's|@SBINDIR@|$(SBINDIR)|g' etc/smsubmit.rc \
		    > $(DESTDIR)$(RCDIR)/smsubmit; \
		chmod 555 $(DESTDIR)$(RCDIR)/smsubmit; \
	else \
		install -d $(DESTDIR)$(SYSTEMDDIR); \
		sed 's|@SBINDIR@|$(SBINDIR)|g' etc/smsubmit.service \
		    > $(DESTDIR)$(SYSTEMDDIR)/smsubmit.service; \
		chmod 444 $(DESTDIR)$(SYSTEMDDIR)/smsubmit.service; \
	fi

clean:
	rm -f smtpd/smsubmit smtpd/smsubmit-regress smtpd/*.o .build-* common/*.o smtpd/parse.c $(UNIT) \
	    $(BENCHBIN) regress/shim/enospc.so

.PHONY: all unit regress run install clean fuzz bench
