"""Host detection: which cgroup hierarchies the sandbox uses, from mountinfo and /proc/self/cgroup.

The layouts are data: a mountinfo text, a /proc/self/cgroup text and a fake cgroup tree in
``tmp_path`` (or an injected writability test). No real cgroup is touched.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.sandbox.host import (
    CgroupHost,
    Mount,
    detect_host,
    parse_mountinfo,
    parse_proc_cgroup,
    plan_host,
)

#: This development host: cgroup v1 controllers plus an (almost) empty unified hierarchy.
HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUP = """\
9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/b84b
2:cpuacct:/
1:cpu:/
0::/
"""
V2_MOUNTINFO = "30 24 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/system.slice/rosey.service\n"
#: Docker without a cgroup namespace: the mount shows the container's own cgroup as its root.
CONTAINER_MOUNTINFO = (
    "700 690 0:32 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
    "701 690 0:29 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro - cgroup cgroup rw,cpu,cpuacct\n"
)
CONTAINER_CGROUP = "4:memory:/docker/abc\n1:cpu,cpuacct:/docker/abc\n"


def everything_usable(path: Path) -> bool:
    return True


def test_parse_mountinfo_keeps_cgroup_mounts_with_their_controllers() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert [m.mountpoint.name for m in mounts] == [
        "cpu",
        "cpuacct",
        "memory",
        "freezer",
        "pids",
        "systemd",
        "unified",
    ]
    memory = mounts[2]
    assert memory == Mount(
        Path("/sys/fs/cgroup/memory"), "/", "cgroup", frozenset({"rw", "memory"})
    )
    assert mounts[-1].fstype == "cgroup2"


def test_parse_mountinfo_unescapes_octal_and_skips_other_filesystems() -> None:
    text = (
        "1 0 0:1 / /mnt/my\\040cgroups rw - cgroup cgroup rw,pids\n"
        "2 0 0:2 / /proc rw - proc proc rw\n"
        "garbage line without separator\n"
    )
    (mount,) = parse_mountinfo(text)
    assert mount.mountpoint == Path("/mnt/my cgroups")


def test_parse_proc_cgroup_splits_comounted_controllers_and_keeps_v2_under_empty_key() -> None:
    found = parse_proc_cgroup("3:cpu,cpuacct:/a\n0::/b\n4:name=systemd:/c\nbroken\n")
    assert found == {"cpu": "/a", "cpuacct": "/a", "": "/b", "name=systemd": "/c"}


@pytest.mark.parametrize(
    ("mountinfo", "cgroup", "controllers", "unified", "layers"),
    [
        pytest.param(
            HYBRID_MOUNTINFO,
            HYBRID_CGROUP,
            {
                "memory": ("v1", "/sys/fs/cgroup/memory/process_api/b84b"),
                "cpu": ("v1", "/sys/fs/cgroup/cpu"),
                "pids": ("v1", "/sys/fs/cgroup/pids"),
            },
            "/sys/fs/cgroup/unified",
            ["cgroup-v1"],
            id="hybrid-v1-with-unified",
        ),
        pytest.param(
            CONTAINER_MOUNTINFO,
            CONTAINER_CGROUP,
            {
                "memory": ("v1", "/sys/fs/cgroup/memory"),
                "cpu": ("v1", "/sys/fs/cgroup/cpu,cpuacct"),
            },
            None,
            ["cgroup-v1"],
            id="container-mount-root",
        ),
        pytest.param("", "", {}, None, [], id="no-cgroups"),
    ],
)
def test_plan_host_table(
    mountinfo: str,
    cgroup: str,
    controllers: dict[str, tuple[str, str]],
    unified: str | None,
    layers: list[str],
) -> None:
    host = plan_host(
        parse_mountinfo(mountinfo),
        parse_proc_cgroup(cgroup),
        usable=everything_usable,
        read=lambda path: "",
    )
    assert {k: (v, str(p)) for k, (v, p) in host.controllers.items()} == controllers
    assert (str(host.unified) if host.unified else None) == unified
    assert host.layers == layers


def test_plan_host_v2_uses_the_controllers_our_cgroup_offers() -> None:
    own = Path("/sys/fs/cgroup/system.slice/rosey.service")
    host = plan_host(
        parse_mountinfo(V2_MOUNTINFO),
        parse_proc_cgroup(V2_CGROUP),
        usable=everything_usable,
        read=lambda path: "cpuset cpu io memory" if path == own / "cgroup.controllers" else "",
    )
    assert host.controllers == {"memory": ("v2", own), "cpu": ("v2", own)}
    assert host.unified == own
    assert host.layers == ["cgroup-v2"]
    assert host.hierarchies == {"unified": own}
    assert any(note.startswith("pids:") for note in host.notes)


def test_plan_host_prefers_v2_and_falls_back_to_v1_per_controller() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    host = plan_host(
        mounts,
        parse_proc_cgroup(HYBRID_CGROUP),
        usable=everything_usable,
        read=lambda path: "pids hugetlb",
    )
    assert host.controllers["pids"] == ("v2", Path("/sys/fs/cgroup/unified"))
    assert host.controllers["memory"][0] == "v1"
    assert host.layers == ["cgroup-v2", "cgroup-v1"]
    assert set(host.hierarchies) == {"unified", "memory", "cpu"}


def test_plan_host_skips_what_is_not_writable_and_says_why() -> None:
    host = plan_host(
        parse_mountinfo(HYBRID_MOUNTINFO),
        parse_proc_cgroup(HYBRID_CGROUP),
        usable=lambda path: "memory" in path.parts,
        read=lambda path: "",
    )
    assert set(host.controllers) == {"memory"}
    assert host.unified is None
    assert any("pids" in note and "not writable" in note for note in host.notes)
    assert any("cgroup v2" in note for note in host.notes)


def test_plan_host_ignores_a_cgroup_outside_the_mounted_root() -> None:
    host = plan_host(
        parse_mountinfo(CONTAINER_MOUNTINFO),
        parse_proc_cgroup("4:memory:/elsewhere\n"),
        usable=everything_usable,
        read=lambda path: "",
    )
    assert host.controllers == {}
    assert not host.usable
    assert any("outside" in note for note in host.notes)


def test_empty_host_has_no_layers() -> None:
    host = CgroupHost()
    assert host.layers == []
    assert host.hierarchies == {}
    assert not host.usable


def _fake_cgroup_dir(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "cgroup.procs").write_text("")


def test_detect_host_reads_proc_and_checks_the_fake_tree(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    _fake_cgroup_dir(root / "memory" / "bot")
    _fake_cgroup_dir(root / "pids")
    (root / "cpu").mkdir(parents=True)  # no cgroup.procs: not a cgroup directory
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "mountinfo").write_text(
        f"1 0 0:1 / {root}/memory rw - cgroup cgroup rw,memory\n"
        f"2 0 0:2 / {root}/pids rw - cgroup cgroup rw,pids\n"
        f"3 0 0:3 / {root}/cpu rw - cgroup cgroup rw,cpu\n"
    )
    (proc / "cgroup").write_text("3:memory:/bot\n2:pids:/\n1:cpu:/\n")
    host = detect_host(proc)
    assert host.controllers == {
        "memory": ("v1", root / "memory" / "bot"),
        "pids": ("v1", root / "pids"),
    }
    assert any(note.startswith("cpu:") for note in host.notes)


def test_detect_host_without_proc_files_has_no_cgroups(tmp_path: Path) -> None:
    host = detect_host(tmp_path / "missing")
    assert not host.usable
    assert host.notes
