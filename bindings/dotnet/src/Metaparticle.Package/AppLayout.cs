using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text;

namespace Metaparticle.Package
{
    /// <summary>
    /// What a .NET app needs in its image, found from the running process:
    /// the command that starts it again, and the host paths to copy in.
    /// </summary>
    /// <remarks>
    /// The image is built from scratch (no base image), so it must hold the
    /// runtime this very process runs on, not just the app. What is taken:
    /// <list type="bullet">
    /// <item>Framework-dependent apps (the usual <c>dotnet build</c> /
    /// <c>dotnet run</c> output): the <c>dotnet</c> host of the install the
    /// process runs on, the <c>host/fxr/&lt;version&gt;</c> folder actually
    /// loaded, every shared framework folder in use
    /// (<c>shared/Microsoft.NETCore.App/&lt;version&gt;</c>, plus e.g.
    /// Microsoft.AspNetCore.App for web apps), and the app's output folder.
    /// The container runs <c>dotnet &lt;entry&gt;.dll args...</c>, so an
    /// apphost launch (<c>dotnet run</c>, <c>./App</c>) works the same.</item>
    /// <item>Self-contained, single-file and Native AOT apps: the executable and
    /// its folder (a framework-dependent single-file app also gets the
    /// runtime folders above, found through <c>DOTNET_ROOT</c>).</item>
    /// <item>ICU, if this process loaded it: the runtime opens it with dlopen, so
    /// no ELF dependency leads to it (libicudata then comes as a dependency of
    /// libicuuc). An app with <c>InvariantGlobalization</c> does not load it
    /// and its image is about 30 MB smaller.</item>
    /// </list>
    /// The native core adds the shared-library closure of every ELF file among
    /// these (libcoreclr's libstdc++, libmetaparticle's libcurl, ...) and the
    /// ELF interpreter.
    /// </remarks>
    internal sealed class AppLayout
    {
        private AppLayout(List<string> command, List<string> include, string workingDir, string defaultName,
                          Dictionary<string, string> environment)
        {
            Command = command;
            Include = include;
            WorkingDir = workingDir;
            DefaultName = defaultName;
            Environment = environment;
        }

        /// <summary>The container's argument vector; [0] is an absolute host path, copied into the image.</summary>
        internal IReadOnlyList<string> Command { get; }

        /// <summary>Host paths copied into the image at the same path.</summary>
        internal IReadOnlyList<string> Include { get; }

        /// <summary>The app's output folder (no trailing separator).</summary>
        internal string WorkingDir { get; }

        /// <summary>The entry assembly's name made a DNS label.</summary>
        internal string DefaultName { get; }

        /// <summary>Environment for the image; <see cref="Options.Env"/> overrides it.</summary>
        internal IReadOnlyDictionary<string, string> Environment { get; }

        // CA bundles in the order the native core looks for them (image.cpp,
        // kCaBundles): it copies the first one found. .NET's OpenSSL looks at
        // its compiled-in default (/usr/lib/ssl/cert.pem on Debian, a symlink
        // the image does not have), so the image names the bundle explicitly.
        private static readonly string[] s_caBundles =
        {
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/ca-bundle.pem",
        };

        // Host settings that decide whether the app starts at all on a runtime
        // other than the one it was built for: carried over so the container
        // starts the way this process did.
        private static readonly string[] s_carriedVariables =
        {
            "DOTNET_ROLL_FORWARD",
            "DOTNET_ROLL_FORWARD_TO_PRERELEASE",
        };

        /// <summary>Inspects the running process.</summary>
        /// <exception cref="MetaparticleException">The runtime's files cannot be found.</exception>
        internal static AppLayout Discover()
        {
            string baseDir = Path.TrimEndingDirectorySeparator(Path.GetFullPath(AppContext.BaseDirectory));
            string[] argv = System.Environment.GetCommandLineArgs();
            IEnumerable<string> args = argv.Skip(1);
            Assembly? entry = Assembly.GetEntryAssembly();
            string entryPath = EntryAssemblyPath(entry);
            List<string> frameworkDirs = FrameworkDirectories(baseDir);

            var command = new List<string>();
            var include = new List<string>();
            string? dotnetRoot = null;
            if (frameworkDirs.Count > 0)
            {
                // Framework-dependent: <root>/shared/<framework>/<version>.
                dotnetRoot = DotnetRoot(frameworkDirs[0]);
                include.Add(HostFxrDirectory(dotnetRoot));
                foreach (string dir in frameworkDirs)
                {
                    include.AddRange(FrameworkFiles(dir));
                }
            }
            if (dotnetRoot is not null && entryPath.Length > 0)
            {
                // dotnet <entry>.dll: works however this process was started
                // (dotnet run and ./App launch the apphost).
                string host = Path.Combine(dotnetRoot, "dotnet");
                if (!File.Exists(host))
                {
                    throw new MetaparticleException(ErrorCode.Error,
                        $"containerize: this app runs on the .NET runtime in {frameworkDirs[0]}, but there is no dotnet host " +
                        $"at {host} to start it with in the container. Publish the app self-contained " +
                        "(dotnet publish --self-contained -r linux-x64) and run that, or set Options.Command.");
                }
                command.Add(host);
                command.Add(entryPath);
            }
            else
            {
                // Self-contained, single-file or Native AOT: the executable is
                // the app (a framework-dependent single-file app finds the
                // runtime included above through DOTNET_ROOT).
                string? exe = System.Environment.ProcessPath;
                if (string.IsNullOrEmpty(exe))
                {
                    throw new MetaparticleException(ErrorCode.Error,
                        "containerize: cannot tell which executable this process runs (Environment.ProcessPath is not set); set Options.Command.");
                }
                command.Add(exe);
            }
            command.AddRange(args);
            include.Add(baseDir);
            foreach (string lib in DynamicallyLoadedLibraries())
            {
                if (!include.Any(dir => IsUnder(lib, dir)))
                {
                    include.Add(lib);
                }
            }

            var env = new Dictionary<string, string>(StringComparer.Ordinal)
            {
                // As Microsoft's own .NET images set it: libraries use it to
                // adapt (file watching by polling, diagnostics defaults).
                ["DOTNET_RUNNING_IN_CONTAINER"] = "true",
            };
            if (dotnetRoot is not null)
            {
                env["DOTNET_LTTng"] = "0";
                // For an apphost or single-file executable as the command (e.g.
                // a custom Options.Command): where the included runtime is.
                env["DOTNET_ROOT"] = dotnetRoot;
            }
            string? bundle = s_caBundles.FirstOrDefault(File.Exists);
            if (bundle is not null)
            {
                env["SSL_CERT_FILE"] = bundle;
            }
            foreach (string name in s_carriedVariables)
            {
                string? value = System.Environment.GetEnvironmentVariable(name);
                if (!string.IsNullOrEmpty(value))
                {
                    env[name] = value;
                }
            }

            string rawName = entry?.GetName().Name ?? Path.GetFileNameWithoutExtension(command[0]);
            return new AppLayout(command, include, baseDir, SanitizeName(rawName), env);
        }

        /// <summary>The entry assembly's file, or "" when it has none (single-file, Native AOT).</summary>
        private static string EntryAssemblyPath(Assembly? entry)
        {
            // Location is "" for assemblies inside a single-file bundle and under
            // Native AOT; those are handled as self-contained executables.
#pragma warning disable IL3000
            string location = entry?.Location ?? "";
#pragma warning restore IL3000
            return location.Length > 0 && File.Exists(location) ? Path.GetFullPath(location) : "";
        }

        /// <summary>
        /// The shared framework folders this process runs on: the host passes
        /// the deps.json of the app and of each framework in
        /// APP_CONTEXT_DEPS_FILES; every one not in the app folder is a
        /// framework's (a self-contained app has only its own).
        /// </summary>
        private static List<string> FrameworkDirectories(string baseDir)
        {
            var dirs = new List<string>();
            string deps = AppContext.GetData("APP_CONTEXT_DEPS_FILES") as string ?? "";
            foreach (string file in deps.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                string? dir = Path.GetDirectoryName(Path.GetFullPath(file));
                if (dir is null || PathEquals(dir, baseDir) || !Directory.Exists(dir) || dirs.Contains(dir))
                {
                    continue;
                }
                dirs.Add(dir);
            }
            // Microsoft.NETCore.App first: it names the install (DotnetRoot).
            // (Location is "" in a single-file bundle, which has no framework folders anyway.)
#pragma warning disable IL3000
            string coreLib = typeof(object).Assembly.Location;
#pragma warning restore IL3000
            string? core = coreLib.Length > 0 ? Path.GetDirectoryName(coreLib) : null;
            if (core is not null && dirs.Remove(core))
            {
                dirs.Insert(0, core);
            }
            return dirs;
        }

        // The LTTng tracepoint provider needs liblttng-ust, which hosts rarely
        // have: including it only brings a "cannot find liblttng-ust" warning on
        // every build. The runtime starts without it (DOTNET_LTTng=0 in the
        // image tells it not to look).
        private const string TracepointProvider = "libcoreclrtraceptprovider.so";

        /// <summary>
        /// The entries of a shared framework folder, each included on its own so
        /// that <see cref="TracepointProvider"/> can be left out.
        /// </summary>
        private static IEnumerable<string> FrameworkFiles(string dir)
        {
            var entries = new List<string>(Directory.EnumerateFileSystemEntries(dir));
            entries.Sort(StringComparer.Ordinal);
            foreach (string entry in entries)
            {
                if (Path.GetFileName(entry) != TracepointProvider)
                {
                    yield return entry;
                }
            }
        }

        /// <summary>The install root above a framework folder: &lt;root&gt;/shared/&lt;name&gt;/&lt;version&gt;.</summary>
        private static string DotnetRoot(string frameworkDir)
        {
            DirectoryInfo? version = new DirectoryInfo(frameworkDir);
            DirectoryInfo? shared = version.Parent?.Parent;
            if (shared is null || shared.Name != "shared" || shared.Parent is null)
            {
                throw new MetaparticleException(ErrorCode.Error,
                    $"containerize: the .NET framework folder {frameworkDir} is not laid out as <dotnet root>/shared/<framework>/<version>, " +
                    "so the dotnet host that starts the app cannot be found. Publish the app self-contained " +
                    "(dotnet publish --self-contained -r linux-x64), or set Options.Command and Options.Include.");
            }
            return shared.Parent.FullName;
        }

        /// <summary>
        /// The host/fxr/&lt;version&gt; folder: the one this process loaded (the
        /// same resolver then picks it in the container, where it is the only
        /// one), else the highest version of the install.
        /// </summary>
        private static string HostFxrDirectory(string root)
        {
            foreach (string path in MappedFiles())
            {
                if (Path.GetFileName(path) == "libhostfxr.so")
                {
                    return Path.GetDirectoryName(path)!;
                }
            }
            string fxr = Path.Combine(root, "host", "fxr");
            string? best = null;
            Version? bestVersion = null;
            if (Directory.Exists(fxr))
            {
                foreach (string dir in Directory.GetDirectories(fxr))
                {
                    string name = Path.GetFileName(dir);
                    int dash = name.IndexOf('-');
                    if (File.Exists(Path.Combine(dir, "libhostfxr.so")) &&
                        Version.TryParse(dash < 0 ? name : name.Substring(0, dash), out Version? v) &&
                        (bestVersion is null || v > bestVersion))
                    {
                        best = dir;
                        bestVersion = v;
                    }
                }
            }
            return best ?? throw new MetaparticleException(ErrorCode.Error,
                $"containerize: no host/fxr/<version>/libhostfxr.so under the .NET install {root}; the dotnet host needs it " +
                "to start the app. Repair the .NET install, publish the app self-contained, or set Options.Command and Options.Include.");
        }

        /// <summary>
        /// Shared libraries the runtime opened with dlopen that the image needs
        /// but no ELF dependency leads to: ICU (see the class remarks).
        /// </summary>
        private static List<string> DynamicallyLoadedLibraries()
        {
            // Globalization loads ICU lazily, on first culture-aware use; make
            // sure that happened, so a non-invariant app gets it.
            _ = CultureInfo.CurrentCulture.CompareInfo.IndexOf("metaparticle", "PARTICLE", CompareOptions.IgnoreCase);
            var libs = new List<string>();
            foreach (string path in MappedFiles())
            {
                string file = Path.GetFileName(path);
                if (file.StartsWith("libicu", StringComparison.Ordinal) && file.Contains(".so", StringComparison.Ordinal) &&
                    !libs.Contains(path))
                {
                    libs.Add(path);
                }
            }
            libs.Sort(StringComparer.Ordinal);
            return libs;
        }

        /// <summary>Files mapped into this process (/proc/self/maps), by their resolved path.</summary>
        private static IEnumerable<string> MappedFiles()
        {
            string[] lines;
            try
            {
                lines = File.ReadAllLines("/proc/self/maps");
            }
            catch (IOException)
            {
                yield break;
            }
            catch (UnauthorizedAccessException)
            {
                yield break;
            }
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (string line in lines)
            {
                // "start-end perms offset dev inode    /path" (the path may contain spaces)
                int slash = line.IndexOf('/');
                if (slash < 0)
                {
                    continue;
                }
                string path = line.Substring(slash);
                if (path.EndsWith(" (deleted)", StringComparison.Ordinal) || !seen.Add(path) || !File.Exists(path))
                {
                    continue;
                }
                yield return path;
            }
        }

        /// <summary>
        /// The name the native core would derive, made from the assembly name
        /// instead of the executable (which is "dotnet"): lowercase
        /// [a-z0-9], other runs of characters become one '-', starting with a
        /// letter, at most 63 characters.
        /// </summary>
        internal static string SanitizeName(string raw)
        {
            var sb = new StringBuilder();
            foreach (char ch in raw)
            {
                char c = char.ToLowerInvariant(ch);
                if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
                {
                    sb.Append(c);
                }
                else if (sb.Length > 0 && sb[sb.Length - 1] != '-')
                {
                    sb.Append('-');
                }
            }
            string s = sb.ToString().TrimEnd('-');
            if (s.Length == 0)
            {
                return "app";
            }
            if (!(s[0] >= 'a' && s[0] <= 'z'))
            {
                s = "app-" + s;
            }
            if (s.Length > 63)
            {
                s = s.Substring(0, 63);
            }
            return s.TrimEnd('-');
        }

        private static bool IsUnder(string path, string dir) =>
            path.StartsWith(Path.TrimEndingDirectorySeparator(dir) + "/", StringComparison.Ordinal);

        private static bool PathEquals(string a, string b) =>
            string.Equals(Path.TrimEndingDirectorySeparator(a), Path.TrimEndingDirectorySeparator(b), StringComparison.Ordinal);
    }
}
