using System.Collections.Generic;
using System.Text.Json.Nodes;

namespace Metaparticle.Package
{
    /// <summary>
    /// What <see cref="Containerizer.Containerize(Options, System.Action)"/> builds and how it runs it.
    /// The names are the seed option names of the original Metaparticle
    /// (<c>ports</c>, <c>replicas</c>, <c>runner</c>, <c>publish</c>, ...).
    /// </summary>
    /// <remarks>
    /// Every property may be left unset: the defaults are an image named after
    /// the entry assembly, tagged <c>latest</c>, run once with Docker/Podman.
    /// The options are checked by the native core, the same way for every
    /// language: a bad value throws <see cref="MetaparticleException"/> with
    /// <see cref="ErrorCode.InvalidArgument"/> and a message naming the option.
    /// </remarks>
    public sealed class Options
    {
        /// <summary>
        /// Image and container name (a DNS label: lowercase letters, digits and
        /// '-'). Default: the entry assembly's name made a DNS label, e.g.
        /// <c>ContainerizeExample</c> → <c>containerizeexample</c>.
        /// </summary>
        public string? Name { get; set; }

        /// <summary>
        /// Image prefix: the image is <c>Repository/Name:Tag</c>, e.g.
        /// <c>docker.io/user</c> or <c>127.0.0.1:5000/team</c>. Required with
        /// <see cref="Publish"/>.
        /// </summary>
        public string? Repository { get; set; }

        /// <summary>Image tag. Default <c>latest</c>.</summary>
        public string? Tag { get; set; }

        /// <summary>
        /// TCP ports the program listens on. With the Docker runner, replica
        /// <c>i</c> publishes port <c>p</c> on host port <c>p + i</c>.
        /// </summary>
        public IList<int> Ports { get; set; } = new List<int>();

        /// <summary>How many copies run. Default 1.</summary>
        public int? Replicas { get; set; }

        /// <summary>
        /// Where the replicas run: <see cref="Runners.Docker"/> (the default:
        /// Docker or Podman through <c>DOCKER_HOST</c>), or
        /// <see cref="Runners.Kubernetes"/> (also spelled
        /// <see cref="Runners.Metaparticle"/>, as in the original).
        /// </summary>
        public string? Runner { get; set; }

        /// <summary>Push the image to <see cref="Repository"/> (the runner then pulls it from there).</summary>
        public bool Publish { get; set; }

        /// <summary>
        /// Expose the ports beyond this machine: Docker binds 0.0.0.0 instead of
        /// 127.0.0.1; Kubernetes gets a LoadBalancer Service.
        /// </summary>
        public bool Public { get; set; }

        /// <summary>Run a sharded service: <see cref="Package.ShardSpec.Shards"/> replicas behind a router.</summary>
        public ShardSpec? ShardSpec { get; set; }

        /// <summary>Run a job: <see cref="Package.JobSpec.Count"/> instances to completion.</summary>
        public JobSpec? JobSpec { get; set; }

        /// <summary>Kubernetes namespace (default: the kubeconfig's).</summary>
        public string? Namespace { get; set; }

        /// <summary>
        /// Names of Kubernetes Secrets (type <c>kubernetes.io/dockerconfigjson</c>) the pods pull a
        /// private image with.
        /// </summary>
        public IList<string> ImagePullSecrets { get; set; } = new List<string>();

        /// <summary>Environment variables added to the image (they override this binding's defaults).</summary>
        public IDictionary<string, string> Env { get; set; } = new Dictionary<string, string>();

        /// <summary>Extra host files or directories copied into the image at a path of your choice.</summary>
        public IList<FileCopy> Files { get; set; } = new List<FileCopy>();

        /// <summary>
        /// Base image (<c>registry/repository:tag</c> or <c>@sha256:</c> digest):
        /// the app's layers are stacked on it; its environment, working
        /// directory and user are kept unless set. Without it, images are
        /// built from scratch with the runtime and the app.
        /// </summary>
        public string? BaseImage { get; set; }

        /// <summary>
        /// Print, on standard output and instead of pushing or running, YAML
        /// that <c>kubectl apply -f -</c> takes (every Kubernetes object), with
        /// the image config and the Docker containers in its leading comments.
        /// See also <see cref="Containerizer.Render(Options)"/>.
        /// </summary>
        public bool DryRun { get; set; }

        /// <summary>Leave the containers running on Ctrl-C instead of removing them.</summary>
        public bool KeepRunning { get; set; }

        /// <summary>No progress lines on standard error.</summary>
        public bool Quiet { get; set; }

        /// <summary>
        /// The container's working directory. Default: the app's output folder
        /// (<see cref="System.AppContext.BaseDirectory"/>), where
        /// <c>appsettings.json</c> and other content files are.
        /// </summary>
        public string? WorkingDir { get; set; }

        /// <summary>
        /// More host paths (files or directories) copied into the image at the
        /// same absolute path, in addition to the .NET runtime and the app's
        /// output folder, which are always included. Shared libraries among
        /// them bring the libraries they need.
        /// </summary>
        public IList<string> Include { get; set; } = new List<string>();

        /// <summary>
        /// What the container runs, as an argument vector whose first element is
        /// an absolute path. Default (null): the <c>dotnet</c> host running this
        /// app's entry assembly with this process's arguments (or, for a
        /// self-contained app, its executable with the arguments).
        /// </summary>
        public IList<string>? Command { get; set; }

        /// <summary>
        /// Options this binding does not know (yet), passed to the native core
        /// as they are, e.g. an option a newer core added. The core rejects
        /// names it does not know, naming them. A name that has a property here
        /// (e.g. <c>ports</c>) throws <see cref="System.ArgumentException"/>: use
        /// the property.
        /// </summary>
        public IDictionary<string, JsonNode?> AdditionalOptions { get; set; } = new Dictionary<string, JsonNode?>();
    }

    /// <summary>The values of <see cref="Options.Runner"/>.</summary>
    public static class Runners
    {
        /// <summary>Docker Engine API on <c>DOCKER_HOST</c> (Docker or Podman's compatible service). The default.</summary>
        public const string Docker = "docker";

        /// <summary>Kubernetes: a Deployment and Service (StatefulSet for shards, Job for jobs).</summary>
        public const string Kubernetes = "kubernetes";

        /// <summary>The original Metaparticle's name for the Kubernetes runner.</summary>
        public const string Metaparticle = "metaparticle";
    }

    /// <summary>A sharded service (<c>shardSpec</c>).</summary>
    public sealed class ShardSpec
    {
        /// <summary>Number of shards (1 to 1000).</summary>
        public int Shards { get; set; }

        /// <summary>The pattern the shard router matches against a request's URL to pick its shard (seed option <c>urlPattern</c>).</summary>
        public string? UrlPattern { get; set; }
    }

    /// <summary>A job (<c>jobSpec</c>): instances that run to completion.</summary>
    public sealed class JobSpec
    {
        /// <summary>How many instances run (1 to 1000).</summary>
        public int Count { get; set; }
    }

    /// <summary>A host file or directory copied into the image (<c>files</c>).</summary>
    public sealed class FileCopy
    {
        /// <summary>Creates an entry copying <paramref name="source"/> to <paramref name="destination"/>.</summary>
        public FileCopy(string source, string destination)
        {
            Source = source;
            Destination = destination;
        }

        /// <summary>The host path (file or directory).</summary>
        public string Source { get; set; }

        /// <summary>The absolute path in the image.</summary>
        public string Destination { get; set; }
    }
}
