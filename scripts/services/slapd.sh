#!/bin/bash
# Throwaway OpenLDAP slapd (Debian 12: 2.5) on 127.0.0.1:$LDAP_PORT, suffix dc=example,dc=org, admin bind
# cn=admin,dc=example,dc=org / $LDAP_ADMIN_PW. No systemd, no /etc/ldap changes.
#
# A throwaway slapd server for the tests, with a subcommand:
#   slapd.sh [start]  write the config, start, add the base entry; with an existing LDAP_DIR it only starts the
#                     server again on its old data (same port)
#   slapd.sh stop     SIGTERM (slapd flushes and exits); returns once the port is closed (a no-op when not running)
# Env: LDAP_DIR (default mktemp), LDAP_PORT (default 3890), LDAP_ADMIN_PW (default admin).
# Installing: debconf `slapd slapd/no_configuration boolean true`, then apt-get install slapd ldap-utils.
# Schemas: core, cosine, inetorgperson, nis, and openssh-lpk (sshPublicKey, not shipped by Debian).
set -e
D=${LDAP_DIR:-$(mktemp -d /tmp/slapd.XXXX)}; PORT=${LDAP_PORT:-3890}; PW=${LDAP_ADMIN_PW:-admin}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
case "${1:-start}" in
stop)
  if [ -s "$D/slapd.pid" ]; then kill -TERM "$(cat "$D/slapd.pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 600); do port_open "$PORT" || { rm -f "$D/slapd.pid"; exit 0; }; sleep 0.05; done
  [ -s "$D/slapd.pid" ] && kill -9 "$(cat "$D/slapd.pid")" 2>/dev/null; rm -f "$D/slapd.pid"
  for _ in $(seq 1 100); do port_open "$PORT" || exit 0; sleep 0.1; done
  exit 1 ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac
fresh=
if [ ! -f "$D/slapd.conf" ]; then
  fresh=1
  mkdir -p "$D/db"
  cat > "$D/openssh-lpk.schema" <<'S'
attributetype ( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey'
  DESC 'MANDATORY: OpenSSH Public key' EQUALITY octetStringMatch
  SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )
objectclass ( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY
  DESC 'MANDATORY: OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )
S
  cat > "$D/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
include $D/openssh-lpk.schema
pidfile  $D/slapd.pid
argsfile $D/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
sizelimit unlimited
database mdb
maxsize 1073741824
suffix "dc=example,dc=org"
rootdn "cn=admin,dc=example,dc=org"
rootpw $(slappasswd -s "$PW")
directory $D/db
index objectClass eq
index cn,uid eq
index member eq
CONF
  slaptest -Q -u -f "$D/slapd.conf"
fi
# -d 0: stay in the foreground (backgrounded here, its PID kept); the ops it logs at -d 0 are none
slapd -f "$D/slapd.conf" -h "ldap://127.0.0.1:$PORT/" -d 0 >> "$D/slapd.log" 2>&1 &
echo $! > "$D/slapd.fg.pid"
up=
for _ in $(seq 1 200); do
  ldapsearch -x -H "ldap://127.0.0.1:$PORT" -b "" -s base namingContexts >/dev/null 2>&1 && { up=1; break; }
  sleep 0.05
done
[ -n "$up" ] || { echo "slapd did not start: see $D/slapd.log" >&2; exit 1; }
[ -z "$fresh" ] || ldapadd -x -H "ldap://127.0.0.1:$PORT" -D "cn=admin,dc=example,dc=org" -w "$PW" >/dev/null <<LDIF
dn: dc=example,dc=org
objectClass: dcObject
objectClass: organization
dc: example
o: example
LDIF
echo "LDAP_DIR=$D LDAP_URL=ldap://127.0.0.1:$PORT PID=$(cat "$D/slapd.fg.pid")"
# stop: slapd.sh stop with the same LDAP_DIR and LDAP_PORT
