//! nixvm-driver: boots the nodes' VMs through their `run-<node>-vm` scripts,
//! speaks the NixOS backdoor protocol and executes a [`crate::plan::Plan`].
