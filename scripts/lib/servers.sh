# Shared by the scripts that start bmac's test servers (kube-env.sh, moto-env.sh): process
# bookkeeping (pid files whose command line must still name the server's directory), free
# loopback ports, timing, and a throw-away test CA that signs loopback serving certificates.
# The sourcing script defines `log` first.

as_root() {
  if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

now_ms() { date +%s%3N; }
elapsed() { # start_ms -> "12.3 s"
  local d=$(( $(now_ms) - $1 ))
  printf '%d.%d s' $((d / 1000)) $(((d % 1000) / 100))
}

free_ports() { # N -> N distinct free loopback TCP ports, one per line
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
    s.close()
EOF
}

# Whether the process we just started is still there. Right after `cmd &` its PID may still
# be the forked shell that has not exec'ed the server yet (its command line is this script's),
# so start-up waits use this, not pid_alive's command-line check.
started_alive() { # dir name
  local f="$1/$2.pid" pid
  [[ -f "$f" ]] || return 1
  pid=$(<"$f")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

# Whether our server still runs: alive, and its command line still names its directory (a
# recycled PID belongs to another program).
pid_alive() { # dir name
  started_alive "$1" "$2" || return 1
  tr '\0' ' ' <"/proc/$(<"$1/$2.pid")/cmdline" 2>/dev/null | grep -qF -- "$1/"
}

stop_one() { # dir name
  local dir="$1" name="$2" f="$1/$2.pid" pid i
  if pid_alive "$dir" "$name"; then
    pid=$(<"$f")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name ($pid) did not stop within 10 s; killing"
      kill -KILL "$pid" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    log "stopped $name ($pid)"
  fi
  rm -f "$f"
}

abs_dir() { # create if needed and print the absolute path
  mkdir -p "$1"
  (cd "$1" && pwd -P)
}

pki_init() { # dir -> dir/pki with ca.key + ca.crt (a 30-day test CA), private to its owner
  local p="$1/pki"
  mkdir -p "$p"
  chmod 0700 "$p"
  (
    cd "$p"
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -sha256 -days 30 -subj "/CN=bmac-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out ca.crt 2>/dev/null
    chmod 0644 ca.crt
  )
}

pki_sign() { # dir name subject extensions -> dir/pki/name.{key,crt}, signed by the test CA
  local p="$1/pki"
  (
    cd "$p"
    umask 077
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2.key" 2>/dev/null
    openssl req -new -key "$2.key" -subj "$3" -out "$2.csr" 2>/dev/null
    printf '%s\n' "$4" >"$2.ext"
    openssl x509 -req -in "$2.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -sha256 \
      -days 30 -extfile "$2.ext" -out "$2.crt" 2>/dev/null
    rm -f "$2.csr" "$2.ext" ca.srl
    chmod 0644 "$2.crt"
  )
}

# A serving certificate for 127.0.0.1 / localhost.
readonly LOOPBACK_SERVER_EXT="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"

# The command line of a server script: install, start DIR, stop DIR, status DIR, or usage
# (the sourcing script defines cmd_install, cmd_start, cmd_stop, cmd_status and usage).
dispatch() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    install) cmd_install "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}
