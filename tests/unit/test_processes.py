"""Parsing /proc's TCP tables and process links into the processes that serve a neard home."""

from near_failover.hosts.processes import listening_inodes, serving_processes

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0BDA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0BDA 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0BDB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
"""


def test_only_listening_sockets_on_the_port_count():
    assert listening_inodes(TCP, (3034,)) == {111}  # 0x0BDA; the established one (01) is not a listener
    assert listening_inodes(TCP, (3035,)) == {333}
    assert listening_inodes(TCP, (9999,)) == set()


def test_processes_matched_by_socket_cwd_or_open_file_under_data():
    links = "\n".join(
        [
            "/proc/10/cwd\t/home/near/.near",
            "/proc/10/fd\t",
            "/proc/10/fd/7\tsocket:[111]",
            "/proc/11/cwd\t/home/near/.near/data",
            "/proc/12/cwd\t/tmp",
            "/proc/12/fd/3\t/home/near/.near/data/LOCK",
            "/proc/13/cwd\t/home/near/.near",  # an operator's shell in the home: not neard
            "/proc/13/fd/1\t/dev/pts/0",
            "/proc/14/cwd\t/home/near/.near/database",  # a sibling whose name starts like data/
            "/proc/15/cwd\t",  # another user's process: unreadable
        ]
    )
    found, unreadable = serving_processes(links, {111}, "/home/near/.near/data")
    assert [p.pid for p in found] == [10, 11, 12]
    assert found[0].reasons == ("listens on the RPC port",)
    assert found[2].reasons == ("has /home/near/.near/data/LOCK open",)
    assert unreadable == 1
