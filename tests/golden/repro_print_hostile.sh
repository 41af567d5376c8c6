#!/bin/sh
# Replays shard 1 of run job-20260101-000000-abcdef (module 'job', recorded: exit_code\nit's $(touch pwned) `touch pwned`; touch pwned\ntouch pwned \ "q" * ${HOME}, exit 3) with plain docker.
set -u
docker image inspect 'img'"'"'$(touch pwned)`x`;y
z' >/dev/null 2>&1 || { printf '%s\n' 'image img'"'"'$(touch pwned)`x`;y\nz is not on this engine (a local build): export the run with --bundle FILE --with-image' >&2; exit 1; }
[ -d '/hostile/da;ta it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}' ] || { printf '%s\n' 'input '"'"'data'"'"' of run job-20260101-000000-abcdef: /hostile/da;ta it'"'"'s $(touch pwned) `touch pwned`; touch pwned\ntouch pwned \ "q" * ${HOME} is not a directory here; copy the data here, or print the script again with --inputs data=PATH' >&2; exit 2; }
: "${API_TOKEN:?export the secret API_TOKEN first (its value is never recorded)}"
mkdir -p -- '/hostile/repro-outputs it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}/out' '/hostile/repro-outputs it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}/.returned' || exit 1
timeout --kill-after=2 7 docker run --rm --name cx-job-repro-20260101-000001-fedcba-1 --init --pids-limit 512 --read-only --tmpfs /tmp:rw,exec,nosuid,nodev,size=1g --cap-drop ALL --security-opt no-new-privileges --network none --user 1000:1000 --workdir /work --mount 'type=bind,"source=/hostile/da;ta it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ ""q"" * ${HOME}",target=/inputs/data,readonly' --mount 'type=bind,"source=/hostile/repro-outputs it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ ""q"" * ${HOME}/out",target=/outputs/out' --mount 'type=bind,"source=/hostile/repro-outputs it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ ""q"" * ${HOME}/.returned",target=/outputs/.containerexec-returned' --env EMPTY= --env HOME=/tmp --env 'MODE=it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}' --env API_TOKEN --memory 268435456 --memory-swap 268435456 --cpus 1.5 --shm-size 67108864 --log-driver json-file --log-opt max-file=2 --log-opt max-size=20m --label containerexec.run=job-repro-20260101-000001-fedcba --label 'team=it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}' 'img'"'"'$(touch pwned)`x`;y
z' python3 /app/job.py 'it'"'"'s $(touch pwned) `touch pwned`; touch pwned
touch pwned \ "q" * ${HOME}' '--flag=$(id)' ''
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  docker rm -f cx-job-repro-20260101-000001-fedcba-1 >/dev/null 2>&1
  echo "timed out after the recorded 7 s (exit $status)" >&2
fi
exit "$status"
