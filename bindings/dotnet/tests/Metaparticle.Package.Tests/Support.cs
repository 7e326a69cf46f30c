using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Xunit;

namespace Metaparticle.Package.Tests
{
    /// <summary>Paths and tools the tests need.</summary>
    internal static class Env
    {
        /// <summary>The repository root (bindings/dotnet/../..), recorded at build time.</summary>
        internal static string RepoRoot =>
            typeof(Env).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
                .First(a => a.Key == "MetaparticleRepoRoot").Value!;

        /// <summary>The dotnet host running these tests (the SDK sets DOTNET_HOST_PATH for test runs).</summary>
        internal static string DotnetHost
        {
            get
            {
                string? fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
                if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk))
                {
                    return fromSdk;
                }
                string? self = Environment.ProcessPath;
                if (self is not null && Path.GetFileName(self) == "dotnet")
                {
                    return self;
                }
                return FindProgram("dotnet") ?? throw new InvalidOperationException("cannot find the dotnet host");
            }
        }

        /// <summary>The native library copied next to these tests (by Metaparticle.Core).</summary>
        internal static string NativeLibrary => Path.Combine(AppContext.BaseDirectory, "libmetaparticle.so");

        internal static string? FindProgram(string name)
        {
            foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator))
            {
                string candidate = Path.Combine(dir, name);
                if (dir.Length > 0 && File.Exists(candidate))
                {
                    return candidate;
                }
            }
            return null;
        }

        /// <summary>A base port p such that p .. p+count-1 are free on 127.0.0.1 right now.</summary>
        internal static int FreePortRange(int count)
        {
            for (int attempt = 0; attempt < 50; attempt++)
            {
                var first = new TcpListener(IPAddress.Loopback, 0);
                first.Start();
                int port = ((IPEndPoint)first.LocalEndpoint).Port;
                var held = new List<TcpListener> { first };
                bool ok = port + count - 1 <= 65535;
                try
                {
                    for (int i = 1; ok && i < count; i++)
                    {
                        var next = new TcpListener(IPAddress.Loopback, port + i);
                        try
                        {
                            next.Start();
                            held.Add(next);
                        }
                        catch (SocketException)
                        {
                            ok = false;
                        }
                    }
                }
                finally
                {
                    held.ForEach(l => l.Stop());
                }
                if (ok)
                {
                    return port;
                }
            }
            throw new InvalidOperationException($"no {count} consecutive free ports found");
        }

        /// <summary>A new directory under /tmp with a short path (unix socket paths must fit in 108 bytes).</summary>
        internal static string MakeTempDir(string prefix)
        {
            string dir = Path.Combine("/tmp", prefix + Guid.NewGuid().ToString("N").Substring(0, 8));
            Directory.CreateDirectory(dir);
            return dir;
        }

        internal static void RemoveTree(string dir)
        {
            try
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }
            }
            catch (Exception e) when (e is IOException || e is UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"warning: could not remove {dir}: {e.Message}");
            }
        }
    }

    /// <summary>A child process whose output lines are collected (with arrival times) and can be waited for.</summary>
    internal sealed class Child : IDisposable
    {
        private readonly Process _process;
        private readonly object _gate = new object();
        private readonly List<(TimeSpan At, string Line)> _out = new List<(TimeSpan, string)>();
        private readonly List<(TimeSpan At, string Line)> _err = new List<(TimeSpan, string)>();
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        [DllImport("libc", SetLastError = true)]
        private static extern int kill(int pid, int sig);

        internal const int SIGINT = 2;
        internal const int SIGTERM = 15;

        internal Child(string program, IEnumerable<string> args, IDictionary<string, string?>? env = null)
        {
            var psi = new ProcessStartInfo(program)
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string a in args)
            {
                psi.ArgumentList.Add(a);
            }
            if (env is not null)
            {
                foreach (KeyValuePair<string, string?> kv in env)
                {
                    if (kv.Value is null)
                    {
                        psi.Environment.Remove(kv.Key);
                    }
                    else
                    {
                        psi.Environment[kv.Key] = kv.Value;
                    }
                }
            }
            _process = new Process { StartInfo = psi };
            _process.OutputDataReceived += (_, e) => Add(_out, e.Data);
            _process.ErrorDataReceived += (_, e) => Add(_err, e.Data);
            _process.Start();
            _process.BeginOutputReadLine();
            _process.BeginErrorReadLine();
        }

        /// <summary>Runs a .NET app (its .dll) with the test's dotnet host.</summary>
        internal static Child Dotnet(string dll, IEnumerable<string> args, IDictionary<string, string?>? env = null) =>
            new Child(Env.DotnetHost, new[] { dll }.Concat(args), env);

        internal int Pid => _process.Id;

        internal string Stdout => Join(_out);

        internal string Stderr => Join(_err);

        internal IReadOnlyList<(TimeSpan At, string Line)> StderrLines
        {
            get
            {
                lock (_gate)
                {
                    return _err.ToList();
                }
            }
        }

        /// <summary>Waits until a stdout (or stderr) line satisfies <paramref name="match"/>; false on timeout or exit.</summary>
        internal bool WaitForLine(Func<string, bool> match, TimeSpan timeout, bool stderr = false)
        {
            DateTime deadline = DateTime.UtcNow + timeout;
            lock (_gate)
            {
                while (true)
                {
                    if ((stderr ? _err : _out).Any(l => match(l.Line)))
                    {
                        return true;
                    }
                    TimeSpan left = deadline - DateTime.UtcNow;
                    if (left <= TimeSpan.Zero || _process.HasExited && _eofs == 2)
                    {
                        return false;
                    }
                    Monitor.Wait(_gate, left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
                }
            }
        }

        internal void Signal(int sig)
        {
            if (kill(_process.Id, sig) != 0)
            {
                throw new InvalidOperationException($"kill({_process.Id}, {sig}) failed: errno {Marshal.GetLastPInvokeError()}");
            }
        }

        /// <summary>Waits for exit and for the end of both output streams; the exit code, or null on timeout.</summary>
        internal int? WaitForExit(TimeSpan timeout)
        {
            if (!_process.WaitForExit(timeout))
            {
                return null;
            }
            _process.WaitForExit(); // drains the asynchronous readers
            return _process.ExitCode;
        }

        /// <summary>Everything the process printed, for failure messages.</summary>
        internal string Describe() => $"--- stdout ---\n{Stdout}\n--- stderr ---\n{Stderr}";

        public void Dispose()
        {
            try
            {
                if (!_process.HasExited)
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(10000);
                }
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            _process.Dispose();
        }

        private int _eofs;

        private void Add(List<(TimeSpan, string)> lines, string? line)
        {
            lock (_gate)
            {
                if (line is null)
                {
                    _eofs++;
                }
                else
                {
                    lines.Add((_clock.Elapsed, line));
                }
                Monitor.PulseAll(_gate);
            }
        }

        private string Join(List<(TimeSpan At, string Line)> lines)
        {
            lock (_gate)
            {
                var sb = new StringBuilder();
                foreach ((TimeSpan _, string line) in lines)
                {
                    sb.Append(line).Append('\n');
                }
                return sb.ToString();
            }
        }
    }
}
