"""Edge boards without the hardware: an emulated aarch64 board (qemu-user) running TVM's RPC
server, for testing ARM artifacts before shipping them. `st-deploy board --emulate aarch64`."""
