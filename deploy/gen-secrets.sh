#!/bin/sh
# Generates what deploy/compose.yaml needs and git must never see (deploy/.gitignore):
#   deploy/.env                          database passwords ([A-Za-z0-9], compose interpolates them)
#   deploy/secrets/<region>-assertion.key  32 random bytes: gateway <-> node HS256 secret
#   deploy/secrets/<region>-credentials.key 32 random bytes: AES-256-GCM key for connection secrets
#   deploy/secrets/admin.token           bearer token of the admin API
#   deploy/secrets/ca.pem, ca.key        the deployment's private CA (P-256, 10 years); it signs
#                                        every certificate below. Clients of the gateway trust
#                                        ca.pem (curl --cacert deploy/secrets/ca.pem). ca.key is
#                                        mounted nowhere.
#   deploy/secrets/gateway.pem, .key     the gateway's server certificate (localhost, 127.0.0.1);
#                                        replace it with one for your public name in production
#   deploy/secrets/gateway-client.pem, .key  the gateway's client certificate (mTLS to the nodes)
#   deploy/secrets/<region>-node.pem, .key   each node's server certificate, for its compose
#                                        service name region-node-<region> (and localhost)
#   deploy/secrets/jwks.json             your identity provider's JWKS (an empty set until you
#                                        put yours there; API keys work without it)
# Existing files are kept, so running it again changes nothing. Needs openssl.
#
# Every file it writes is mode 0600 and deploy/secrets is 0700, whatever the caller's umask or
# the folders' modes were (modes are set explicitly, not left to the umask). The containers run
# as uid 10001 and bind mounts keep the host's owner and mode, so they can read the files only
# when these belong to that uid: run as root, the script gives deploy/secrets/* to
# CONTAINER_UID (default 10001); otherwise it prints the chown to run.
set -eu
cd "$(dirname "$0")"
REGIONS=${REGIONS:-"us eu apac"}
CONTAINER_UID=${CONTAINER_UID:-10001}
umask 077
mkdir -p secrets
chmod 0700 secrets
pw() { openssl rand -hex 24; }
if [ ! -f .env ]; then
  {
    echo "PG_ADMIN_PASSWORD=$(pw)"
    echo "DIRECTORY_PASSWORD=$(pw)"
    for r in $REGIONS; do
      R=$(echo "$r" | tr '[:lower:]-' '[:upper:]_')
      echo "${R}_OWNER_PASSWORD=$(pw)"
      echo "${R}_APP_PASSWORD=$(pw)"
      echo "${R}_AUDITOR_PASSWORD=$(pw)"
    done
  } > .env
fi
# Added later (least-privilege directory roles): appended to an existing .env when missing.
for v in DIRECTORY_READER_PASSWORD DIRECTORY_WRITER_PASSWORD; do
  grep -q "^$v=" .env || echo "$v=$(pw)" >> .env
done
for r in $REGIONS; do
  for k in assertion credentials; do
    [ -f "secrets/$r-$k.key" ] || openssl rand -out "secrets/$r-$k.key" 32
  done
done
[ -f secrets/admin.token ] || openssl rand -hex 24 > secrets/admin.token
# The private CA, then leaf certificates signed by it (not self-signed: TLS clients such as
# rustls refuse a CA certificate presented as a server's own).
[ -f secrets/ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -nodes -days 3650 -subj "/CN=residency compose CA" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout secrets/ca.key -out secrets/ca.pem 2>/dev/null
# leaf NAME USAGE SAN: secrets/NAME.pem and .key for USAGE (serverAuth or clientAuth). An
# existing pair is kept unless its certificate does not chain to the CA (the self-signed
# gateway certificate of earlier versions), or when this user cannot read it (already handed
# to the containers' uid).
leaf() {
  if [ -f "secrets/$1.key" ]; then
    [ -r "secrets/$1.pem" ] || return 0
    openssl verify -CAfile secrets/ca.pem "secrets/$1.pem" >/dev/null 2>&1 && return 0
  fi
  ext=$(mktemp)
  printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=$2" "subjectAltName=$3" > "$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "secrets/$1.key" -out "secrets/$1.csr" 2>/dev/null
  openssl x509 -req -in "secrets/$1.csr" -CA secrets/ca.pem -CAkey secrets/ca.key \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -extfile "$ext" \
    -out "secrets/$1.pem" 2>/dev/null
  rm -f "secrets/$1.csr" "$ext"
}
leaf gateway serverAuth "DNS:localhost,IP:127.0.0.1"
leaf gateway-client clientAuth "DNS:gateway"
for r in $REGIONS; do
  leaf "$r-node" serverAuth "DNS:region-node-$r,DNS:localhost"
done
[ -f secrets/jwks.json ] || echo '{"keys":[]}' > secrets/jwks.json
# Files already handed to the containers' uid (a previous run) are left as they are.
for f in .env secrets/*; do
  if [ -O "$f" ]; then chmod 0600 "$f"; fi
done
if [ "$(id -u)" = 0 ]; then
  chown "$CONTAINER_UID:$CONTAINER_UID" secrets/*
elif [ "$(id -u)" != "$CONTAINER_UID" ]; then
  echo "the containers run as uid $CONTAINER_UID and cannot read files owned by you (mode 0600):" >&2
  echo "  sudo chown $CONTAINER_UID:$CONTAINER_UID $(pwd)/secrets/*" >&2
fi
echo "secrets ready in $(pwd)/secrets and $(pwd)/.env"
