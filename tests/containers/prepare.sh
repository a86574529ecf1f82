#!/usr/bin/env bash
# Readies this machine for `make test-compose`, which runs docker-compose.yml in real containers:
#   1. podman, runc and debootstrap from Debian (there is no Docker engine here);
#   2. Docker Compose v2, Debian trixie's build, to drive podman's Docker-compatible API;
#   3. stand-ins for the base images the Dockerfiles and the compose file name, built locally
#      and tagged with those exact names, because no image registry is reachable.
# Each step is skipped when its result exists: CACHE keeps the Debian trees and the compose
# binary, podman's own layer cache makes an unchanged stand-in a no-op rebuild.
#
# Settings (the Makefile passes them): CACHE, a folder for what is downloaded; LOCALSTACK_VENV,
# the tests' LocalStack virtualenv, whose freeze the LocalStack stand-in installs.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/containers
: "${CACHE:?CACHE is not set}" "${LOCALSTACK_VENV:?LOCALSTACK_VENV is not set}"
export CONTAINERS_CONF=$PWD/$here/containers.conf

if ((EUID != 0)); then
  echo "make test-compose needs root: it installs Debian packages and runs podman as root" >&2
  exit 1
fi
mkdir -p "$CACHE"
# The stand-ins carry the official images' names, so they live in a podman storage of their own
# under CACHE: no other use of podman on this machine can take them for the real images.
cat >"$CACHE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$CACHE/storage"
runroot = "/run/news-etl-containers"
EOF
export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf

# 1. podman and what it needs here.
missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install --yes -qq "${missing[@]}" >/dev/null
fi

# 2. Docker Compose v2 from Debian trixie (bookworm has only the Python v1). Its one dependency
# is libc6 >= 2.34, so the binary runs here; apt fetches it with trixie's signed index, into
# CACHE, without adding trixie to the machine's sources.
compose=$CACHE/docker-compose
if [[ ! -x $compose ]]; then
  apt_dir=$CACHE/apt-trixie
  rm -rf "$apt_dir" && mkdir -p "$apt_dir/lists/partial"  # nothing from an interrupted run
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    >"$apt_dir/sources.list"
  apt=(-o "Dir::Etc::SourceList=$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
  apt-get "${apt[@]}" update -qq
  (cd "$apt_dir" && apt-get "${apt[@]}" download -qq docker-compose)
  dpkg-deb --fsys-tarfile "$apt_dir"/docker-compose_*.deb \
    | tar -xO ./usr/libexec/docker/cli-plugins/docker-compose >"$compose.part"
  chmod +x "$compose.part" && mv "$compose.part" "$compose"
  rm -rf "$apt_dir"
fi
"$compose" version

# 3. Stand-in images. Debian trees from debootstrap, imported as localhost/standin/debian:SUITE.
for suite in bookworm trixie; do
  if ! podman image exists "localhost/standin/debian:$suite"; then
    if [[ ! -s $CACHE/debian-$suite.tar ]]; then
      echo "debootstrap $suite (about 30 s)"
      rm -rf "$CACHE/rootfs-$suite"
      debootstrap --variant=minbase "$suite" "$CACHE/rootfs-$suite" http://deb.debian.org/debian >/dev/null
      tar -C "$CACHE/rootfs-$suite" -cf "$CACHE/debian-$suite.tar.part" .
      mv "$CACHE/debian-$suite.tar.part" "$CACHE/debian-$suite.tar"
      rm -rf "$CACHE/rootfs-$suite"
    fi
    podman import --quiet "$CACHE/debian-$suite.tar" "localhost/standin/debian:$suite" >/dev/null
  fi
done

# The names to stand in for, read from the files that use them, so that a version bump is noticed.
python_image=$(awk '$1 == "FROM" {print $2; exit}' etl-processor/Dockerfile)
image() { awk -v name="$1" '$1 == "image:" && index($2, name ":") == 1 {print $2; exit}' docker-compose.yml; }
localstack_image=$(image localstack/localstack)
moto_image=$(image motoserver/moto)
awscli_image=$(image amazon/aws-cli)
awscli_version=$(sed -n 's/^awscli==\([0-9.]*\).*/\1/p' requirements-dev.txt)
for dockerfile in populate-script/Dockerfile etl-processor/Dockerfile; do
  if [[ $(awk '$1 == "FROM" {print $2; exit}' $dockerfile) != "$python_image" ]]; then
    echo "$dockerfile: FROM differs from etl-processor/Dockerfile's $python_image; one stand-in serves both" >&2
    exit 1
  fi
done
unknown() { echo "$here/$1 stands in for $2, not $3" >&2; exit 1; }
[[ $python_image == python:3.11.*-slim-bookworm ]] || unknown python.Containerfile python:3.11.*-slim-bookworm "$python_image"
[[ $localstack_image == localstack/localstack:4.14.0 ]] || unknown localstack.Containerfile 4.14.0 "$localstack_image"
[[ $moto_image =~ ^motoserver/moto:[0-9]+\.[0-9]+\.[0-9]+$ ]] || unknown moto.Containerfile "motoserver/moto:X.Y.Z" "$moto_image"
[[ $awscli_image == amazon/aws-cli:2.* ]] || unknown aws-cli.Containerfile "amazon/aws-cli:2.*" "$awscli_image"
[[ -n $awscli_version ]] || { echo "requirements-dev.txt: no awscli==VERSION pin for the aws-cli stand-in" >&2; exit 1; }

context=$CACHE/context
rm -rf "$context" && mkdir -p "$context"
cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca.crt"
# The machine's own CAs (the egress proxy's) one by one as well: Java's trust store, made when
# the ETL image installs its JRE, takes certificates from /etc/ssl/certs, not from the bundle.
mkdir "$context/host-local-ca"
cp -r /usr/local/share/ca-certificates/. "$context/host-local-ca/"
"$LOCALSTACK_VENV/bin/pip" freeze --quiet >"$context/requirements.txt"
build() { # TAG CONTAINERFILE [BUILD ARGUMENT...]: quiet unless it fails
  echo "stand-in $1"
  podman build --quiet --network host --tag "$1" --file "$here/$2" "${@:3}" "$context" >"$context/build.log" 2>&1 \
    || { cat "$context/build.log" >&2; exit 1; }
}
build "docker.io/library/$python_image" python.Containerfile
build "docker.io/$localstack_image" localstack.Containerfile
build "docker.io/$moto_image" moto.Containerfile --build-arg "PYTHON_IMAGE=docker.io/library/$python_image" \
  --build-arg "MOTO_VERSION=${moto_image#*:}"
build "docker.io/$awscli_image" aws-cli.Containerfile --build-arg "PYTHON_IMAGE=docker.io/library/$python_image" \
  --build-arg "AWSCLI_VERSION=$awscli_version"
