//! The `tillmesh` command line: run a node, create a shop, and talk to a running node. All of
//! it is in [`tillmesh::cli`].

fn main() -> std::process::ExitCode {
    tillmesh::cli::main()
}
